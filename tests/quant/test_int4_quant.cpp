// INT4 methods: rtn bit-for-bit against the seed's torch recipe (incl. half-even ties and the fp32-vs-bf16 scale
// trap), rtn-ct, mse beating rtn, the seed cascade being worse than rtn (SPEC §4), error sums, thread determinism.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/int4_pack.h"
#include "quant/int4_quant.h"
#include "quant_test_data.h"

using namespace hlwq;

namespace {

constexpr int kG = 128;

// The seed's rtn_int4 (tools/fixtures/common.py), one element at a time: fp32 scale for the division,
// torch.round = half to even (nearbyint in the default rounding mode), clamp, bf16 scale stored.
void scalar_rtn(const std::vector<float>& w, int64_t out, int64_t in, std::vector<int8_t>& q,
                std::vector<uint16_t>& s) {
  q.assign(out * in, 0);
  s.assign(out * in / kG, 0);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t g = 0; g < in / kG; ++g) {
      const float* grp = &w[o * in + g * kG];
      float amax = 0;
      for (int j = 0; j < kG; ++j) amax = std::max(amax, std::fabs(grp[j]));
      const float scale = std::max(amax, 1e-10f) / 7.0f;
      for (int j = 0; j < kG; ++j) {
        const float r = std::nearbyint(grp[j] / scale);
        q[o * in + g * kG + j] = int8_t(std::min(7.0f, std::max(-8.0f, r)));
      }
      s[o * (in / kG) + g] = f32_to_bf16(scale);
    }
  }
}

std::vector<int8_t> unpack(const Int4Result& r) {
  std::vector<int8_t> q(r.out * r.in);
  int4_unpack(r.packed.data(), r.out, r.in, q.data());
  return q;
}

}  // namespace

TEST(Int4Method, NamesRoundTrip) {
  for (auto m : {Int4Method::rtn, Int4Method::rtn_ct, Int4Method::mse, Int4Method::hlwq_cascade,
                 Int4Method::hlwq_cascade_lm5})
    EXPECT_EQ(parse_int4_method(int4_method_name(m)), m);
  EXPECT_EQ(int4_method_name(Int4Method::rtn_ct), "rtn-ct");
  EXPECT_THROW(parse_int4_method("gptq"), Error);
}

TEST(Int4Rtn, HalfEvenTiesWithExactScale) {
  // amax = 7 → scale = 1 exactly; w/scale hits every kind of tie.
  std::vector<float> g(kG, 0.0f);
  const float v[] = {7.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -7.0f, 0.49f, 6.5f};
  const int expect[] = {7, 2, 4, -2, -4, 0, 0, 2, -7, 0, 6};
  std::copy(std::begin(v), std::end(v), g.begin());
  int8_t q[kG];
  EXPECT_EQ(int4_rtn_group(g.data(), q), 0x3F80);  // bf16 1.0
  for (size_t i = 0; i < std::size(v); ++i) EXPECT_EQ(q[i], expect[i]) << v[i];
  for (size_t i = std::size(v); i < kG; ++i) EXPECT_EQ(q[i], 0);
}

TEST(Int4Rtn, DividesByFp32ScaleNotBf16) {
  // scale = amax/7 = 1 + 2^-9 (not a bf16 value; bf16 rounds it to 1.0). w = 2.5·scale: w/scale = 2.5 → 2,
  // whereas dividing by the bf16 scale would give 2.50488 → 3.
  const float s = 1.0f + std::ldexp(1.0f, -9);
  std::vector<float> g(kG, 0.0f);
  g[0] = 7.0f * s;
  g[1] = 2.5f * s;
  int8_t q[kG];
  EXPECT_EQ(int4_rtn_group(g.data(), q), f32_to_bf16(1.0f));
  EXPECT_EQ(q[0], 7);
  EXPECT_EQ(q[1], 2);
}

TEST(Int4Rtn, ZeroGroup) {
  std::vector<float> g(kG, 0.0f);
  int8_t q[kG];
  const uint16_t s = int4_rtn_group(g.data(), q);
  EXPECT_EQ(s, f32_to_bf16(1e-10f / 7.0f));
  EXPECT_GT(bf16_to_f32(s), 0.0f);
  for (int j = 0; j < kG; ++j) EXPECT_EQ(q[j], 0);
  const auto r = quantize_int4(Int4Method::rtn, g.data(), 1, kG);
  EXPECT_EQ(r.error.sq_err, 0.0);
  EXPECT_EQ(r.error.sq_ref, 0.0);
  for (int32_t word : r.packed) EXPECT_EQ(uint32_t(word), 0x88888888u);
}

TEST(Int4Rtn, MatrixMatchesScalarReferenceBitForBit) {
  const int64_t out = 96, in = 512;
  auto w = test::heavy_tailed_values(out * in, 31);
  for (int64_t k = 0; k < in; k += 3) w[k] = 0.25f * float(k % 29) * (k % 2 ? 1.0f : -1.0f);  // exact ties
  std::fill(w.begin() + 2 * in, w.begin() + 2 * in + kG, 0.0f);                              // a zero group
  std::vector<int8_t> q;
  std::vector<uint16_t> s;
  scalar_rtn(w, out, in, q, s);
  const auto r = quantize_int4(Int4Method::rtn, w.data(), out, in);
  EXPECT_EQ(unpack(r), q);
  EXPECT_EQ(r.scale, s);
}

TEST(Int4RtnCt, ClampsBeforeRounding) {
  // amax = 7.5 → scale = 1: 7.4 → 7, −7.5 → −7.5 → −8 (half even), 2.5 → 2; scale stored = bf16(1.0).
  std::vector<float> g(kG, 0.0f);
  g[0] = 7.5f, g[1] = 7.4f, g[2] = -7.5f, g[3] = 2.5f, g[4] = -6.6f;
  int8_t q[kG];
  EXPECT_EQ(int4_rtn_ct_group(g.data(), q), 0x3F80);
  EXPECT_EQ(q[0], 7);
  EXPECT_EQ(q[1], 7);
  EXPECT_EQ(q[2], -8);
  EXPECT_EQ(q[3], 2);
  EXPECT_EQ(q[4], -7);
}

TEST(Int4Mse, NoWorseThanAnyGridScale) {
  // The chosen bf16 scale must reconstruct at least as well as every candidate of quality_ref.py's grid
  // (α ∈ linspace(0.55, 1.15, 49) × amax/7, bf16-rounded), measured exactly with q = clamp(round(g/s)).
  const auto w = test::heavy_tailed_values(64 * kG, 15);
  for (int g = 0; g < 64; ++g) {
    const float* grp = &w[g * kG];
    auto err_of = [&](const int8_t* q, float s) {
      double e = 0;
      for (int j = 0; j < kG; ++j) e += std::pow(double(float(q[j]) * s) - grp[j], 2);
      return e;
    };
    int8_t q[kG], qc[kG];
    const double chosen = err_of(q, bf16_to_f32(int4_mse_group(grp, q)));
    float amax = 0;
    for (int j = 0; j < kG; ++j) amax = std::max(amax, std::fabs(grp[j]));
    for (int i = 0; i < 49; ++i) {
      const float s = bf16_to_f32(f32_to_bf16(amax / 7.0f * (0.55f + 0.6f * float(i) / 48.0f)));
      for (int j = 0; j < kG; ++j) qc[j] = int8_t(std::clamp(std::nearbyint(grp[j] / s), -8.0f, 7.0f));
      ASSERT_LE(chosen, err_of(qc, s) * (1 + 1e-6)) << "group " << g << " candidate " << i;
    }
  }
}

TEST(Int4Methods, ErrorSumsMatchDequant) {
  const int64_t out = 16, in = 256;
  const auto w = test::gaussian_values(out * in, 4, 0.03f);
  for (auto m : {Int4Method::rtn, Int4Method::rtn_ct, Int4Method::mse, Int4Method::hlwq_cascade}) {
    const auto r = quantize_int4(m, w.data(), out, in);
    ASSERT_EQ(r.packed.size(), size_t(out * in / 8));
    ASSERT_EQ(r.scale.size(), size_t(out * in / kG));
    std::vector<float> d(out * in);
    int4_dequant(r.packed.data(), r.scale.data(), out, in, d.data());
    const WeightError e = weight_error(w.data(), d.data(), out * in);
    EXPECT_NEAR(r.error.sq_err, e.sq_err, 1e-9 * e.sq_err) << int4_method_name(m);
    EXPECT_NEAR(r.error.sq_ref, e.sq_ref, 1e-9 * e.sq_ref) << int4_method_name(m);
  }
}

TEST(Int4Methods, MseBeatsRtnAndCascadeIsWorseThanRtn) {
  const int64_t out = 128, in = 1024;
  std::vector<float> gauss = test::gaussian_values(out * in, 12, 0.02f);
  std::vector<float> heavy = test::heavy_tailed_values(out * in, 13);
  for (auto& x : heavy) x *= 0.01f;
  for (const auto* w : {&gauss, &heavy}) {
    const double rtn = quantize_int4(Int4Method::rtn, w->data(), out, in).error.rel();
    const double mse = quantize_int4(Int4Method::mse, w->data(), out, in).error.rel();
    EXPECT_LT(mse, 0.95 * rtn) << (w == &gauss ? "gaussian" : "heavy");
  }
  // SPEC §4: the seed cascade (HLWQ-Q5 with its table → bf16 → rtn) has 7–21 % higher weight MSE than rtn.
  const double rtn = quantize_int4(Int4Method::rtn, gauss.data(), out, in).error.rel();
  const double cascade = quantize_int4(Int4Method::hlwq_cascade, gauss.data(), out, in).error.rel();
  const double cascade_lm5 = quantize_int4(Int4Method::hlwq_cascade_lm5, gauss.data(), out, in).error.rel();
  EXPECT_GT(cascade, 1.05 * rtn);
  EXPECT_GT(cascade_lm5, rtn);
  EXPECT_LT(cascade_lm5, cascade);
}

TEST(Int4Methods, DeterministicAcrossThreadCounts) {
  const int64_t out = 64, in = 384;
  const auto w = test::heavy_tailed_values(out * in, 14);
  const int saved = omp_get_max_threads();
  for (auto m : {Int4Method::rtn, Int4Method::rtn_ct, Int4Method::mse, Int4Method::hlwq_cascade}) {
    omp_set_num_threads(1);
    const auto a = quantize_int4(m, w.data(), out, in);
    omp_set_num_threads(2);
    const auto b = quantize_int4(m, w.data(), out, in);
    EXPECT_EQ(a.packed, b.packed) << int4_method_name(m);
    EXPECT_EQ(a.scale, b.scale) << int4_method_name(m);
    EXPECT_EQ(a.error.sq_err, b.error.sq_err) << int4_method_name(m);
    EXPECT_EQ(a.error.sq_ref, b.error.sq_ref) << int4_method_name(m);
  }
  omp_set_num_threads(saved);
}

TEST(Int4Methods, RejectsBadShapesAndNonFinite) {
  std::vector<float> w(2 * 256, 0.1f);
  EXPECT_THROW(quantize_int4(Int4Method::rtn, w.data(), 2, 200), Error);
  w[300] = std::nanf("");
  EXPECT_THROW(quantize_int4(Int4Method::rtn, w.data(), 2, 256), Error);
  w[300] = INFINITY;
  EXPECT_THROW(quantize_int4(Int4Method::mse, w.data(), 2, 256), Error);
}

// The cascade's per-thread scratch is sliced from one buffer allocated before the parallel region (an
// allocation failure inside it would terminate). Each thread must get its own slice: results are identical
// with many threads, and when called from inside another parallel region (as quantize_model does), where the
// inner region runs on one thread.
TEST(Int4Methods, CascadeScratchPerThreadAndNested) {
  const int64_t out = 64, in = 384;
  const auto w = test::heavy_tailed_values(out * in, 15);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto ref = quantize_int4(Int4Method::hlwq_cascade_lm5, w.data(), out, in);
  omp_set_num_threads(7);
  const auto many = quantize_int4(Int4Method::hlwq_cascade_lm5, w.data(), out, in);
  EXPECT_EQ(many.packed, ref.packed);
  EXPECT_EQ(many.scale, ref.scale);
  std::vector<Int4Result> nested(4);
#pragma omp parallel for num_threads(4)
  for (int i = 0; i < 4; ++i) nested[size_t(i)] = quantize_int4(Int4Method::hlwq_cascade_lm5, w.data(), out, in);
  omp_set_num_threads(saved);
  for (const auto& r : nested) {
    EXPECT_EQ(r.packed, ref.packed);
    EXPECT_EQ(r.scale, ref.scale);
  }
}
