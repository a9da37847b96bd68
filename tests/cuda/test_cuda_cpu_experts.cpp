// Routed experts computed on the CPU by the CUDA backend (--n-cpu-moe K, --cpu-experts all|auto; cpu_experts.cuh)
// against the all-resident GPU run of the same checkpoint: for K ∈ {1, every layer} and for all/auto under expert
// cache sizes N ∈ {1, top-k − 1, top-k}, a prefill and greedy decode steps (the decode graph with its host node)
// give logits within kCpuExpertsLogitsRelTol and the same greedy tokens (a difference only at a near-tie of the
// reference), and the counters show that the CPU did the work. Models: the demo model, the bundled INT4 and bf16
// fixtures and the larger random fixtures of ../shared. Also the refusals. Skips loudly without a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>

#include <fmt/format.h>

#include "../model/model_test_util.h"
#include "backend/cuda/expert_store.h"
#include "cuda_test_util.h"
#include "demo_checkpoints.h"
#include "model/model.h"
#include "runtime/tokenizer.h"
#include "test_paths.h"

namespace hlwq {
namespace {
namespace fs = std::filesystem;

// Each placement of the routed experts is held to the all-resident GPU run, which the acceptance names; that
// run is held to the CPU engine on the same inputs with the GPU's rounding of every GEMM input to bf16
// (cpu_bf16_gemm_inputs). The experts the CUDA backend hands to the CPU round their inputs the same way
// (expert_jobs.h), so a placement changes only the order of fp32 sums. Without that rounding in the reference the
// larger random fixture amplifies the rounding itself to 0.18 of max |logit| in every placement alike (H200,
// 2026-12-01), which says nothing about placements. The bounds are those of the CudaModel tests (6e-2 of max |logit|
// on the random fixtures, 1.2e-1 on the trained demo model; tests/cuda/test_cuda_model.cpp, docs/numerics.md).
//
// Routing near-ties: the larger random fixture (16 experts, top-4, 8 layers) has steps where a router's k-th and
// (k+1)-th logits nearly tie, and any difference in the sums picks the other expert there. Measured against the
// rounded CPU reference (H200, 2026-12-01): 0.005–0.009 of max |logit| for steps 0–7, then 0.139 at step 8 — where the
// CPU engine without the rounding also jumps (0.021 → 0.155) — and 0.03–0.09 after it (the flip stays in the state).
// So on that fixture the GPU run is held to the reference by the median step within the bound (a wrong op moves every
// step) and every step within kRoutingFlipRelTol; the placements still meet the bound at every step against the GPU.
// The trained model is fed real text: on a prompt of arbitrary token ids it is chaotic — measured on the H200
// (2026-11-30), a 5e-4 norm-wise difference after layer 2 (one expert computed in bf16 instead of fp32) grew ~50×
// through layer 3 and ended as KL 0.11 in the last logits, while every layer's own difference stayed at bf16 size
// and the perplexity of every placement agreed within 0.1 % over 200 windows (scripts/gpu_check.sh); that measures
// the prompt, not the placement.
constexpr double kCpuExpertsLogitsRelTol = 6e-2;
constexpr double kCpuExpertsTrainedLogitsRelTol = 1.2e-1;
constexpr double kRoutingFlipRelTol = 0.25;  // one expert chosen otherwise at a near-tie (0.139 measured, above)
constexpr int kDecodeSteps = 12;

fs::path testdata(const std::string& rel) { return test::source_dir() / "testdata" / rel; }
fs::path demo() { return test::source_dir() / "models" / "tiny-moe-dev"; }

struct Outcome {
  std::vector<std::vector<float>> logits;  // prefill's last row, then each decode step's
  std::vector<int32_t> tokens;             // greedy choice after each of them
  ExpertCacheStats stats;
  std::string plan;
};

int32_t argmax(const std::vector<float>& v) { return int32_t(std::max_element(v.begin(), v.end()) - v.begin()); }

// Prefill `prompt`, then kDecodeSteps single-token steps feeding `forced` (the reference's greedy tokens; empty:
// the run's own), so one near-tie flip does not derail the comparison.
Outcome run(const fs::path& dir, const std::vector<int32_t>& prompt, const std::function<void(LoadOptions&)>& tweak,
            const std::vector<int32_t>& forced) {
  LoadOptions lo;
  lo.device = Device::cuda;
  lo.kv_tokens = 256;
  tweak(lo);
  Model m = Model::load(dir, lo);
  const int64_t V = m.config().vocab_size;
  Sequence s = m.new_sequence(64);
  std::vector<float> row(static_cast<size_t>(V));
  Outcome r;
  m.forward(prompt.data(), int64_t(prompt.size()), s, row.data());
  for (int i = 0;; ++i) {
    r.logits.push_back(row);
    r.tokens.push_back(argmax(row));
    if (i == kDecodeSteps) break;
    const int32_t next = forced.empty() ? r.tokens.back() : forced[size_t(i)];
    m.forward(&next, 1, s, row.data());
  }
  r.stats = m.expert_cache_stats().value_or(ExpertCacheStats{});
  r.plan = m.backend().memory_plan();
  return r;
}

// Logits within tol of the reference at every step (routing_flips: the median step within tol, every step within
// kRoutingFlipRelTol); a greedy token differs only where the reference's top-2 margin is within tol (a near-tie).
void expect_close(const Outcome& got, const Outcome& ref, double tol, const std::string& what,
                  bool routing_flips = false) {
  ASSERT_EQ(got.logits.size(), ref.logits.size());
  const int64_t V = int64_t(ref.logits[0].size());
  int flips = 0;
  double worst = 0, worst_kl = 0;
  std::vector<double> step_err;
  for (size_t i = 0; i < ref.logits.size(); ++i) {
    const auto d = test::compare_logits(got.logits[i], ref.logits[i], V);
    worst = std::max(worst, d.max_abs_err / d.max_abs_ref);
    worst_kl = std::max(worst_kl, d.max_kl);
    step_err.push_back(d.max_abs_err / d.max_abs_ref);
    EXPECT_LE(d.max_abs_err, (routing_flips ? kRoutingFlipRelTol : tol) * d.max_abs_ref) << what << ", step " << i;
    if (got.tokens[i] != ref.tokens[i]) {
      ++flips;
      std::vector<float> top(ref.logits[i]);
      std::nth_element(top.begin(), top.begin() + 1, top.end(), std::greater<float>());
      EXPECT_LE(double(top[0] - top[1]), tol * d.max_abs_ref) << what << ", step " << i << ": greedy token "
                                                              << got.tokens[i] << " instead of " << ref.tokens[i]
                                                              << " where the reference has no near-tie";
    }
  }
  std::nth_element(step_err.begin(), step_err.begin() + std::ptrdiff_t(step_err.size() / 2), step_err.end());
  const double median = step_err[step_err.size() / 2];
  if (routing_flips) {
    EXPECT_LE(median, tol) << what << ": median step";
  }
  std::printf("[ cpu exp  ] %s: worst step %.3g of max |logit| (median %.3g), KL %.2e, %d greedy differences at near-ties "
              "in %zu steps; CPU %lld experts (%lld static, %lld instead of PCIe), %lld hits, %lld loads, %lld in place\n",
              what.c_str(), worst, median, worst_kl, flips, ref.logits.size(),
              (long long)got.stats.cpu_experts, (long long)got.stats.cpu_static, (long long)got.stats.cpu_only,
              (long long)got.stats.hits, (long long)got.stats.misses, (long long)got.stats.streamed);
}

// 24 arbitrary token ids (for the random-weight fixtures).
std::vector<int32_t> id_prompt(int64_t V) {
  std::vector<int32_t> p(24);
  for (size_t i = 0; i < p.size(); ++i) p[i] = int32_t((i * 7919 + 11) % size_t(V));
  return p;
}

void check_model(const fs::path& dir, const std::vector<int32_t>& prompt, double tol, bool routing_flips = false) {
  SCOPED_TRACE(dir.filename().string());
  auto go = [&](const std::function<void(LoadOptions&)>& tweak, const std::vector<int32_t>& forced) {
    return run(dir, prompt, tweak, forced);
  };
  const Outcome gpu = go([](LoadOptions&) {}, {});
  const ModelConfig cfg = Model::load(dir, LoadOptions{}).config();
  const int64_t L = cfg.n_layers, k = cfg.n_experts_active;
  std::vector<int32_t> forced(gpu.tokens.begin(), gpu.tokens.end() - 1);
  // the GPU's reference: the CPU engine on the same inputs with the GPU's roundings; the placements' is the GPU run
  const Outcome cpu = go([](LoadOptions& lo) {
    lo.device = Device::cpu;
    lo.cpu_bf16_gemm_inputs = true;
  }, forced);
  expect_close(gpu, cpu, tol, "every expert on the GPU, against the CPU", routing_flips);
  const Outcome& ref = gpu;

  // --n-cpu-moe K: the first K layers' routed experts only on the CPU (every step computes k per token there)
  for (int64_t K : {int64_t(1), L}) {
    const Outcome r = go([&](LoadOptions& lo) { lo.n_cpu_moe = K; }, forced);
    expect_close(r, ref, tol, fmt::format("--n-cpu-moe {}", K));
    EXPECT_GE(r.stats.cpu_experts, kDecodeSteps * K * k) << "K = " << K;
    EXPECT_EQ(r.stats.cpu_static, r.stats.cpu_experts) << "K = " << K;
    EXPECT_NE(r.plan.find("--n-cpu-moe"), std::string::npos) << r.plan;
  }
  // with a cache in the other layers too: slots only where experts are on the GPU
  {
    const Outcome r = go([&](LoadOptions& lo) { lo.n_cpu_moe = 1, lo.moe_expert_cache_size = 2; }, forced);
    expect_close(r, ref, tol, "--n-cpu-moe 1 --moe-expert-cache-size 2");
    EXPECT_NE(r.plan.find(fmt::format("in {} layers", L - 1)), std::string::npos) << r.plan;
    EXPECT_GE(r.stats.lookups(), kDecodeSteps * (L - 1) * k);
  }
  // cache misses on the CPU: all (every miss; admitted when a slot is free), auto (pinned costs that split the
  // misses of a decode step between the paths)
  for (int64_t N : {int64_t(1), k - 1, k}) {
    if (N < 1) continue;
    const Outcome all = go([&](LoadOptions& lo) {
      lo.moe_expert_cache_size = int(N);
      lo.cpu_experts = CpuExperts::all;
    }, forced);
    expect_close(all, ref, tol, fmt::format("--cpu-experts all, {} slots", N));
    {  // the next layer's prefetch off: the slots hold only the steps' own admissions
      const Outcome np = go([&](LoadOptions& lo) {
        lo.moe_expert_cache_size = int(N);
        lo.cpu_experts = CpuExperts::all;
        lo.moe_prefetch = PrefetchMode::off;
      }, forced);
      expect_close(np, ref, tol, fmt::format("--cpu-experts all, {} slots, no prefetch", N));
    }
    EXPECT_GT(all.stats.cpu_experts, 0) << N << " slots";
    EXPECT_EQ(all.stats.cpu_only, 0) << "all admits its misses where a slot is free";
    EXPECT_EQ(all.stats.streamed, 0) << "under all no miss is read over PCIe in place";
    const Outcome au = go([&](LoadOptions& lo) {
      lo.moe_expert_cache_size = int(N);
      lo.cpu_experts = CpuExperts::automatic;
      // a CPU 2.5x faster than PCIe and no round trip: a lone miss goes to the CPU, of 3 or more some stay on
      // the GPU (cpu_split.h), so every decode step with a miss exercises the split
      lo.cpu_split_costs = CpuSplitCosts{1000, 400, 0};
    }, forced);
    expect_close(au, ref, tol, fmt::format("--cpu-experts auto, {} slots", N));
    if (N < k) {
      EXPECT_GT(au.stats.cpu_only, 0) << N << " slots: every decode step has a miss";
    }
    EXPECT_EQ(au.stats.cpu_only, au.stats.cpu_experts) << "auto's CPU experts are misses not copied";
    // measured costs: whatever auto decides, the result is the same
    const Outcome measured = go([&](LoadOptions& lo) {
      lo.moe_expert_cache_size = int(N);
      lo.cpu_experts = CpuExperts::automatic;
    }, forced);
    expect_close(measured, ref, tol, fmt::format("--cpu-experts auto (measured costs), {} slots", N));
    EXPECT_NE(measured.plan.find("measured at load"), std::string::npos) << measured.plan;
  }
}

// Vocabulary size of a checkpoint.
int64_t vocab(const fs::path& dir) { return Model::load(dir, LoadOptions{}).config().vocab_size; }

TEST(CudaCpuExperts, DemoModel) {
  HLWQ_REQUIRE_CUDA();
  const Tokenizer tok = Tokenizer::from_file(demo() / "tokenizer.json");
  const std::vector<int32_t> prompt = tok.encode(
      "The interpreter reads the source file, compiles each function to bytecode and runs it in a loop that");
  ASSERT_GE(prompt.size(), 16u);  // a prefill of several tokens per expert
  check_model(demo(), prompt, kCpuExpertsTrainedLogitsRelTol);
}

// A native HLWQ checkpoint (the demo model at 4 bits): the CPU computes its routed experts from the HLWQ codes,
// the GPU its shared expert and the rest; --n-cpu-moe once refused it (the shared expert's tables had no codebook).
TEST(CudaCpuExperts, HlwqCheckpoint) {
  HLWQ_REQUIRE_CUDA();
  const Tokenizer tok = Tokenizer::from_file(demo() / "tokenizer.json");
  const std::vector<int32_t> prompt = tok.encode(
      "The interpreter reads the source file, compiles each function to bytecode and runs it in a loop that");
  check_model(test::demo_hlwq4(), prompt, kCpuExpertsTrainedLogitsRelTol);
}

TEST(CudaCpuExperts, BundledInt4AndBf16Fixtures) {
  HLWQ_REQUIRE_CUDA();
  for (const char* name : {"tiny-random-small-ct-int4", "tiny-random-small-bf16"})
    check_model(testdata(name), id_prompt(vocab(testdata(name))), kCpuExpertsLogitsRelTol);
}

TEST(CudaCpuExperts, RandomFixturesOfShared) {
  HLWQ_REQUIRE_CUDA();
  for (const char* name : {"tiny-random-ct-int4", "tiny-random-bf16"}) {
    const fs::path dir = test::shared_dir() / "fixtures" / name;
    if (!fs::exists(dir)) GTEST_SKIP() << "SKIPPED LOUDLY: " << dir << " is absent (fresh clone without ../shared)";
    check_model(dir, id_prompt(vocab(dir)), kCpuExpertsLogitsRelTol, /*routing_flips=*/true);
  }
}

// A decode graph replayed with the host node computes what plain launches compute (same CPU and GPU work, in the
// same places: bit for bit).
TEST(CudaCpuExperts, GraphReplayEqualsPlainLaunches) {
  HLWQ_REQUIRE_CUDA();
  const fs::path dir = testdata("tiny-random-small-ct-int4");
  for (bool cache : {false, true}) {
    auto tweak = [&](bool graphs) {
      return [=](LoadOptions& lo) {
        lo.cuda_graphs = graphs;
        lo.n_cpu_moe = 1;
        if (cache) lo.moe_expert_cache_size = 1, lo.cpu_experts = CpuExperts::all;
      };
    };
    const auto prompt = id_prompt(vocab(dir));
    const Outcome g = run(dir, prompt, tweak(true), {}), e = run(dir, prompt, tweak(false), g.tokens);
    EXPECT_EQ(g.logits, e.logits) << (cache ? "with" : "without") << " a cache";
  }
}

// --n-cpu-moe K: the first K layers' experts are computed from the checkpoint on the CPU, so they get no pinned
// copy for the GPU (at Qwen3.6 sizes that is 410 MB of host memory per layer).
TEST(CudaCpuExperts, StaticLayersGetNoPinnedCopy) {
  HLWQ_REQUIRE_CUDA();
  const Model m = Model::load(testdata("tiny-random-small-ct-int4"), LoadOptions{});
  const ModelWeights& w = m.weights();
  const int64_t L = int64_t(w.layers.size());
  const cuda::HostExpertStore all(w, 0), part(w, 1);
  EXPECT_EQ(part.bytes() * L, all.bytes() * (L - 1));
  EXPECT_EQ(0, std::memcmp(part.device_view(1), all.device_view(1), size_t(all.experts_per_layer() *
                                                                          all.layout().bytes)));
  EXPECT_THROW(part.device_view(0), Error);
}

TEST(CudaCpuExperts, Refusals) {
  HLWQ_REQUIRE_CUDA();
  const fs::path dir = testdata("tiny-random-small-ct-int4");
  const int64_t L = Model::load(dir, LoadOptions{}).config().n_layers;
  LoadOptions lo;
  lo.device = Device::cuda;
  lo.n_cpu_moe = L + 1;
  try {
    Model::load(dir, lo);
    ADD_FAILURE() << "--n-cpu-moe past the layer count was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--n-cpu-moe"), std::string::npos) << e.what();
  }
  lo.n_cpu_moe = -1;
  EXPECT_THROW(Model::load(dir, lo), Error);
  lo.n_cpu_moe = 0;
  lo.cpu_experts = CpuExperts::automatic;  // without a cache there is no miss to decide on
  EXPECT_THROW(Model::load(dir, lo), Error);
  lo.cpu_experts = CpuExperts::all;
  EXPECT_THROW(Model::load(dir, lo), Error);
  lo.n_cpu_moe = L;  // every layer on the CPU is fine
  lo.cpu_experts = CpuExperts::off;
  EXPECT_NO_THROW(Model::load(dir, lo));
}

}  // namespace
}  // namespace hlwq
