// CpuExpertJobs (src/backend/cpu/expert_jobs.h), the work of the CUDA backend's host node for routed experts on the
// CPU, against an independent reference: the expert's matrices dequantized to fp32 (linear_decode_rows) and
// multiplied out in double, on the INT4 and the bf16 fixture. Also: the order jobs arrive in does not change a bit
// of any row (the CUDA side collects them with atomics), bad jobs are refused, and the byte count is the
// checkpoint's.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/expert_jobs.h"
#include "backend/cpu/matmul.h"
#include "core/dtype.h"
#include "core/error.h"
#include "model/model.h"
#include "test_paths.h"

namespace hlwq {
namespace {

// The reference is fp64 over the same fp32 weights; the CPU kernels sum fp32 in another order (≈ √n · 2⁻²⁴ per
// dot product, n ≤ 4096) and SiLU is fp32: 1e-5 of the row's largest magnitude keeps a wide margin and still fails
// a wrong row, column or weight (errors of order 1).
constexpr double kJobsRelTol = 1e-5;

std::vector<float> dense(const LinearWeight& w) {
  std::vector<float> d(size_t(w.out * w.in));
  linear_decode_rows(cpu_kernels(), w, 0, w.out, d.data());
  return d;
}

float bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

// weight · down(silu(gate x) ⊙ up x) in double; rounded: x and silu(gate x) ⊙ up x rounded to bf16 first, as the
// GPU's expert kernels read them.
std::vector<double> reference(const ExpertWeights& e, const float* x0, float weight, bool rounded = false) {
  const auto g = dense(e.gate_proj), u = dense(e.up_proj), d = dense(e.down_proj);
  const int64_t I = e.gate_proj.out, H = e.gate_proj.in;
  std::vector<float> x(x0, x0 + H);
  if (rounded)
    for (float& v : x) v = bf16(v);
  std::vector<double> a(static_cast<size_t>(I)), y(static_cast<size_t>(H));
  for (int64_t i = 0; i < I; ++i) {
    double sg = 0, su = 0;
    for (int64_t h = 0; h < H; ++h)
      sg += double(g[size_t(i * H + h)]) * x[size_t(h)], su += double(u[size_t(i * H + h)]) * x[size_t(h)];
    a[size_t(i)] = sg / (1 + std::exp(-sg)) * su;
    if (rounded) a[size_t(i)] = bf16(float(a[size_t(i)]));
  }
  for (int64_t h = 0; h < H; ++h) {
    double s = 0;
    for (int64_t i = 0; i < I; ++i) s += double(d[size_t(h * I + i)]) * a[size_t(i)];
    y[size_t(h)] = weight * s;
  }
  return y;
}

class CpuExpertJobsTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CpuExpertJobsTest, RowsEqualTheReferenceInAnyOrder) {
  const Model m = Model::load(test::source_dir() / "testdata" / GetParam());
  const ModelConfig& cfg = m.config();
  const int64_t H = cfg.hidden_size, I = cfg.moe_intermediate, E = cfg.n_experts, T = 5;
  const int layer = int(cfg.n_layers - 1);
  const MoeWeights& w = m.weights().layers[size_t(layer)].moe;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> xn(size_t(T * H));
  for (float& v : xn) v = nd(rng);
  // every token with three experts, two tokens sharing expert 1 (one group of several rows), the last expert too
  std::vector<CpuExpertJob> jobs;
  int32_t slot = 0;
  for (int32_t t = 0; t < T; ++t)
    for (int32_t e : {1, int32_t((t * 3 + 2) % E), int32_t(E - 1 - t % 2)})
      jobs.push_back({slot++, t, e, 0.25f + 0.1f * float(t)});
  CpuExpertJobs cj(H, I, int64_t(jobs.size()) + 3);
  std::vector<float> out(jobs.size() * size_t(H));
  const CpuExpertWork work = cj.run(w, jobs.data(), int64_t(jobs.size()), xn.data(), T, out.data());
  std::vector<int32_t> distinct;
  for (const auto& j : jobs) distinct.push_back(j.expert);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_EQ(work.experts, int64_t(distinct.size()));
  int64_t bytes = 0;
  for (int32_t e : distinct) bytes += expert_weight_bytes(w.experts[size_t(e)]);
  EXPECT_EQ(work.bytes, bytes);
  EXPECT_GT(expert_weight_bytes(w.experts[0]), 3 * I * H / 2) << "at least half a byte per weight";

  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto ref = reference(w.experts[size_t(jobs[i].expert)], xn.data() + jobs[i].token * H, jobs[i].weight);
    double amax = 0, err = 0;
    for (int64_t h = 0; h < H; ++h)
      amax = std::max(amax, std::fabs(ref[size_t(h)])), err = std::max(err, std::fabs(out[i * size_t(H) + size_t(h)] - ref[size_t(h)]));
    EXPECT_LE(err, kJobsRelTol * amax) << "job " << i << " (token " << jobs[i].token << ", expert " << jobs[i].expert << ")";
    EXPECT_GT(amax, 0) << "job " << i;
  }
  // the same jobs reversed: row i of the new list is bit-identical to its job's row before
  std::vector<CpuExpertJob> rev(jobs.rbegin(), jobs.rend());
  std::vector<float> out2(out.size());
  cj.run(w, rev.data(), int64_t(rev.size()), xn.data(), T, out2.data());
  for (size_t i = 0; i < rev.size(); ++i)
    EXPECT_TRUE(std::equal(out2.begin() + int64_t(i) * H, out2.begin() + int64_t(i + 1) * H,
                           out.begin() + int64_t(jobs.size() - 1 - i) * H)) << "reversed job " << i;
}

// bf16_inputs (the CUDA backend's CPU experts): against the reference with the same two roundings. The fp32 sums
// can tip an element of SiLU(gate)·up across a bf16 rounding boundary (one element 2⁻⁸ off, rare): 1e-3 of the row
// bounds that, while the unrounded rows differ from the rounded reference by more (the rounding is applied).
TEST_P(CpuExpertJobsTest, Bf16InputsEqualTheRoundedReference) {
  const Model m = Model::load(test::source_dir() / "testdata" / GetParam());
  const ModelConfig& cfg = m.config();
  const int64_t H = cfg.hidden_size, I = cfg.moe_intermediate, E = cfg.n_experts, T = 3;
  const MoeWeights& w = m.weights().layers[0].moe;
  std::mt19937 rng(8);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> xn(size_t(T * H));
  for (float& v : xn) v = nd(rng);
  std::vector<CpuExpertJob> jobs;
  for (int32_t t = 0; t < T; ++t) jobs.push_back({t, t, int32_t((t * 5 + 1) % E), 0.5f});
  CpuExpertJobs rounded(H, I, T, CpuIsa::auto_detect, 0, true), plain(H, I, T);
  std::vector<float> out(size_t(T * H)), out_plain(size_t(T * H));
  rounded.run(w, jobs.data(), T, xn.data(), T, out.data());
  plain.run(w, jobs.data(), T, xn.data(), T, out_plain.data());
  double worst = 0, worst_plain = 0;
  for (size_t i = 0; i < jobs.size(); ++i) {
    const auto ref = reference(w.experts[size_t(jobs[i].expert)], xn.data() + jobs[i].token * H, jobs[i].weight, true);
    double amax = 0, err = 0, err_plain = 0;
    for (int64_t h = 0; h < H; ++h) {
      const size_t o = i * size_t(H) + size_t(h);
      amax = std::max(amax, std::fabs(ref[size_t(h)]));
      err = std::max(err, std::fabs(out[o] - ref[size_t(h)]));
      err_plain = std::max(err_plain, std::fabs(out_plain[o] - ref[size_t(h)]));
    }
    worst = std::max(worst, err / amax);
    worst_plain = std::max(worst_plain, err_plain / amax);
  }
  EXPECT_LE(worst, 1e-3);
  EXPECT_GT(worst_plain, 10 * worst) << "bf16 inputs change nothing";
}

TEST_P(CpuExpertJobsTest, RefusesBadJobs) {
  const Model m = Model::load(test::source_dir() / "testdata" / GetParam());
  const ModelConfig& cfg = m.config();
  const int64_t H = cfg.hidden_size, I = cfg.moe_intermediate, E = cfg.n_experts;
  const MoeWeights& w = m.weights().layers[0].moe;
  std::vector<float> xn(size_t(2 * H), 1.f), out(size_t(4 * H));
  CpuExpertJobs cj(H, I, 2);
  const CpuExpertJob bad_expert{0, 0, int32_t(E), 1.f}, bad_token{0, 2, 0, 1.f};
  EXPECT_THROW(cj.run(w, &bad_expert, 1, xn.data(), 2, out.data()), Error);
  EXPECT_THROW(cj.run(w, &bad_token, 1, xn.data(), 2, out.data()), Error);
  const std::vector<CpuExpertJob> three(3, CpuExpertJob{0, 0, 0, 1.f});
  EXPECT_THROW(cj.run(w, three.data(), 3, xn.data(), 2, out.data()), Error) << "more jobs than the buffers hold";
  EXPECT_EQ(cj.run(w, three.data(), 0, xn.data(), 2, out.data()).experts, 0);
  CpuExpertJobs wrong(H + 1, I, 2);
  const CpuExpertJob ok{0, 0, 0, 1.f};
  EXPECT_THROW(wrong.run(w, &ok, 1, xn.data(), 2, out.data()), Error) << "experts of another shape";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, CpuExpertJobsTest,
                         ::testing::Values("tiny-random-small-ct-int4", "tiny-random-small-bf16"));

}  // namespace
}  // namespace hlwq
