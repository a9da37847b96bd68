// The chunked (WY/UT) delta rule equals the token recurrence, from a non-zero saved state, on realistic inputs
// (normalized q/k, gates g < 0 including very strong decay, β in [0, 1]), and any split of the sequence into
// calls of either form gives the same outputs and final state.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "backend/cpu/gdn.h"
#include "model_test_util.h"
#include "backend/cpu/norm.h"

namespace hlwq {
namespace {

// Two fp32 evaluations of the same sums in different orders over ≤ 150 steps; outputs are O(1).
constexpr double kGdnAbsTol = 2e-5;

struct GdnInputs {
  int64_t T, dk, dv;
  std::vector<float> q, k, v, g, beta, S0;
};

GdnInputs make_inputs(int64_t T, int64_t dk, int64_t dv, float decay_scale, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.f, 1.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  GdnInputs in{T, dk, dv, std::vector<float>(size_t(T * dk)), std::vector<float>(size_t(T * dk)),
               std::vector<float>(size_t(T * dv)), std::vector<float>(size_t(T)), std::vector<float>(size_t(T)),
               std::vector<float>(size_t(dk * dv))};
  auto l2 = [&](float* x, float scale) {
    float s = 0;
    for (int64_t i = 0; i < dk; ++i) s += x[i] * x[i];
    for (int64_t i = 0; i < dk; ++i) x[i] *= scale / std::sqrt(s + 1e-6f);
  };
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < dk; ++i) in.q[size_t(t * dk + i)] = n(rng), in.k[size_t(t * dk + i)] = n(rng);
    l2(in.q.data() + t * dk, 1.f / std::sqrt(float(dk)));
    l2(in.k.data() + t * dk, 1.f);
    for (int64_t i = 0; i < dv; ++i) in.v[size_t(t * dv + i)] = n(rng);
    const float A = std::log(u(rng) * 8 + 0.5f), dt = 0.5f * n(rng);  // as the fixtures' A_log / dt_bias
    in.g[size_t(t)] = -std::exp(A) * softplus(decay_scale * n(rng) + dt);
    in.beta[size_t(t)] = sigmoid(n(rng));
  }
  for (auto& s : in.S0) s = 0.3f * n(rng);
  return in;
}

struct GdnRun {
  std::vector<float> o, S;
};

// Runs the rule over [0, T) in pieces: (length, chunked?) pairs.
GdnRun run_split(const GdnInputs& in, const std::vector<std::pair<int64_t, bool>>& pieces) {
  test::CpuTestCtx c(cpu_kernels());
  GdnRun r{std::vector<float>(size_t(in.T * in.dv)), in.S0};
  int64_t t = 0;
  for (auto [len, chunked] : pieces) {
    auto f = chunked ? gdn_core_chunked : gdn_core_recurrent;
    f(c.ctx, len, in.dk, in.dv, in.q.data() + t * in.dk, in.k.data() + t * in.dk, in.v.data() + t * in.dv,
      in.g.data() + t, in.beta.data() + t, r.S.data(), r.o.data() + t * in.dv);
    t += len;
  }
  EXPECT_EQ(t, in.T);
  return r;
}

void expect_close(const GdnRun& a, const GdnRun& b, const char* what) {
  double eo = 0, es = 0;
  for (size_t i = 0; i < a.o.size(); ++i) {
    ASSERT_TRUE(std::isfinite(a.o[i]) && std::isfinite(b.o[i])) << what << " output " << i;
    eo = std::max(eo, double(std::fabs(a.o[i] - b.o[i])));
  }
  for (size_t i = 0; i < a.S.size(); ++i) es = std::max(es, double(std::fabs(a.S[i] - b.S[i])));
  EXPECT_LE(eo, kGdnAbsTol) << what << ": outputs differ";
  EXPECT_LE(es, kGdnAbsTol) << what << ": final states differ";
}

TEST(GatedDeltaNet, ChunkedEqualsRecurrence) {
  for (float decay : {1.f, 6.f}) {  // 6: many tokens with g ≈ −20 or below (state wiped within a token)
    const GdnInputs in = make_inputs(150, 64, 48, decay, 7);
    expect_close(run_split(in, {{150, true}}), run_split(in, {{150, false}}), "chunked vs recurrent");
  }
}

TEST(GatedDeltaNet, AnySplitOfTheSequenceAgrees) {
  const GdnInputs in = make_inputs(150, 32, 32, 1.f, 11);
  const GdnRun ref = run_split(in, {{150, false}});
  expect_close(run_split(in, {{30, true}, {13, true}, {107, true}}), ref, "30+13+107 chunked");
  expect_close(run_split(in, {{64, true}, {1, false}, {1, false}, {84, true}}), ref, "chunk, two decodes, chunk");
  expect_close(run_split(in, {{1, true}, {149, true}}), ref, "1+149 chunked");
}

TEST(GatedDeltaNet, ChunkedDiffersWhenTheStateIsDropped) {
  // The comparison above can fail: restarting from a zero state must change the outputs.
  GdnInputs in = make_inputs(100, 32, 32, 1.f, 3);
  in.g.assign(in.g.size(), -0.05f);  // weak decay, so the initial state matters for the whole sequence
  const GdnRun ref = run_split(in, {{100, false}});
  in.S0.assign(in.S0.size(), 0.f);
  const GdnRun zero = run_split(in, {{100, true}});
  double e = 0;
  for (size_t i = 0; i < ref.o.size(); ++i) e = std::max(e, double(std::fabs(ref.o[i] - zero.o[i])));
  EXPECT_GT(e, 100 * kGdnAbsTol);
}

}  // namespace
}  // namespace hlwq
