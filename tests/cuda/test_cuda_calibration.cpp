// Calibration statistics collected on the GPU (calib/engine_calibration.h with Device::cuda, summed on the device by
// backend/cuda/input_stats.cuh) against the CPU engine's, on the trained demo model and real text (this
// repository's README). Every distinct input of every layer is compared: mixer inputs and outputs, the shared
// expert's two inputs, each routed expert's two inputs over only its tokens.
// What may differ, and the budgets: the two forwards differ (the GPU's GEMM inputs are bf16, ≤ 2^-9 relative, and
// so is its SwiGLU output h, which the down projections read), and routing can change where two experts' router
// logits nearly tie, moving a token from one expert to another. So: token counts of mixers and shared experts are
// equal; each layer's routed tokens sum to T·k; an expert's count may move by a few tokens; each statistic is
// within a norm-wise relative error budget of the CPU's (measured 2–9 · 10⁻³ on first runs: the budgets below).
// Negative control: expert e's GPU statistics against expert e + 1's CPU ones are far outside the budget — the
// wrong-expert bug class of the seed (SPEC) would fail here.
// The device sums run in a fixed order: two GPU runs are bit-identical.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>
#include <sstream>

#include "calib/engine_calibration.h"
#include "cuda_test_util.h"
#include "model/model.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

fs::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

// Norm-wise ‖a − b‖ / ‖b‖ of two statistics.
double stats_err(const LinearInputStats& a, const LinearInputStats& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < b.H.size(); ++i) d += (a.H[i] - b.H[i]) * (a.H[i] - b.H[i]), m += b.H[i] * b.H[i];
  return std::sqrt(d / m);
}

// Statistics of these linears: the demo model calibrated on 4 windows of 256 tokens of the README.
struct Collected {
  LinearStatsMap stats;
  CalibrationSummary sum;
};
Collected collect(Device d, const std::vector<std::string>& names) {
  std::ifstream f(test::source_dir() / "README.md");
  std::stringstream ss;
  ss << f.rdbuf();
  CalibOptions co;
  co.model_dir = demo().string();
  co.text = ss.str();
  co.text_name = "README.md";
  co.ctx = 256;
  co.tokens = 4 * 256;
  co.device = d;
  co.progress = false;
  EngineCalibration cal(co);
  Collected c;
  c.stats = cal.collect(names);
  c.sum = cal.summary();
  return c;
}

// Every quantizable linear of the demo model, by name.
std::vector<std::string> linear_names() {
  const Model m = Model::load(demo().string(), LoadOptions{});
  std::vector<std::string> n;
  for (const LayerWeights& l : m.weights().layers) {
    for (const LinearWeight* w : {&l.gdn.in_proj_qkv, &l.gdn.in_proj_z, &l.gdn.in_proj_b, &l.gdn.in_proj_a,
                                  &l.gdn.out_proj, &l.attn.q_proj, &l.attn.k_proj, &l.attn.v_proj, &l.attn.o_proj})
      if (!w->name.empty()) n.push_back(w->name);
    if (l.moe.has_shared)
      for (const LinearWeight* w : {&l.moe.shared.gate_proj, &l.moe.shared.up_proj, &l.moe.shared.down_proj})
        n.push_back(w->name);
    for (const ExpertWeights& e : l.moe.experts)
      for (const LinearWeight* w : {&e.gate_proj, &e.up_proj, &e.down_proj}) n.push_back(w->name);
  }
  return n;
}

bool routed(const std::string& name) { return name.find(".experts.") != std::string::npos; }

// Budgets (norm-wise): a statistic of inputs computed by bf16-input GEMMs in an fp32 forward; a routed expert's
// whose tokens may differ by a near-tied routing choice.
constexpr double kStatsTol = 0.03, kRoutedStatsTol = 0.08;
// A routed expert's token count may move by this many tokens (of ~64 per expert here).
constexpr int64_t kRoutedTokenSlack = 4;

TEST(CudaCalibration, StatisticsMatchTheCpuEngine) {
  HLWQ_REQUIRE_CUDA();
  const std::vector<std::string> names = linear_names();
  const Collected gpu = collect(Device::cuda, names), cpu = collect(Device::cpu, names);
  EXPECT_EQ(gpu.sum.engine, "cuda");
  EXPECT_EQ(cpu.sum.engine, "cpu");
  ASSERT_EQ(gpu.stats.size(), cpu.stats.size());
  double worst = 0, worst_routed = 0;
  std::map<std::string, int64_t> layer_tokens;  // routed gate inputs' tokens per layer
  for (const auto& [name, c] : cpu.stats) {
    const auto it = gpu.stats.find(name);
    ASSERT_NE(it, gpu.stats.end()) << name;
    const LinearInputStats& g = *it->second;
    ASSERT_EQ(g.in, c->in) << name;
    const double e = stats_err(g, *c);
    if (routed(name)) {
      EXPECT_LE(std::abs(g.n_tokens - c->n_tokens), kRoutedTokenSlack) << name;
      EXPECT_LT(e, kRoutedStatsTol) << name << " (" << g.n_tokens << " / " << c->n_tokens << " tokens)";
      worst_routed = std::max(worst_routed, e);
      if (name.ends_with("gate_proj")) layer_tokens[name.substr(0, name.find(".mlp."))] += g.n_tokens;
    } else {
      EXPECT_EQ(g.n_tokens, c->n_tokens) << name;
      EXPECT_LT(e, kStatsTol) << name;
      worst = std::max(worst, e);
    }
  }
  const Model m = Model::load(demo().string(), LoadOptions{});
  EXPECT_EQ(layer_tokens.size(), m.weights().layers.size());
  for (const auto& [layer, tokens] : layer_tokens)
    EXPECT_EQ(tokens, gpu.sum.tokens * m.config().n_experts_active) << layer;
  std::printf("[ err      ] %zu statistics: worst %.3g (budget %.3g), routed experts %.3g (budget %.3g)\n",
              cpu.stats.size(), worst, kStatsTol, worst_routed, kRoutedStatsTol);
  // negative control: the neighbouring expert's statistics are another matrix altogether
  const std::vector<ExpertWeights>& ex = m.weights().layers[1].moe.experts;
  for (size_t e : {size_t(0), size_t(5)}) {
    for (const auto& [a, b] : {std::pair{ex[e].gate_proj.name, ex[e + 1].gate_proj.name},
                               std::pair{ex[e].down_proj.name, ex[e + 1].down_proj.name}}) {
      ASSERT_TRUE(gpu.stats.count(a) && cpu.stats.count(b)) << a;
      EXPECT_GT(stats_err(*gpu.stats.at(a), *cpu.stats.at(b)), 3 * kRoutedStatsTol) << a << " vs " << b;
    }
  }
}

TEST(CudaCalibration, DeviceSumsAreDeterministic) {
  HLWQ_REQUIRE_CUDA();
  std::vector<std::string> names;
  for (const std::string& n : linear_names())
    if (n.find("layers.2.") != std::string::npos) names.push_back(n);  // an attention layer and its experts
  const Collected a = collect(Device::cuda, names), b = collect(Device::cuda, names);
  ASSERT_FALSE(a.stats.empty());
  ASSERT_EQ(a.stats.size(), b.stats.size());
  for (const auto& [name, s] : a.stats) {
    EXPECT_EQ(s->n_tokens, b.stats.at(name)->n_tokens) << name;
    EXPECT_EQ(s->H, b.stats.at(name)->H) << name;
  }
}

}  // namespace
}  // namespace hlwq
