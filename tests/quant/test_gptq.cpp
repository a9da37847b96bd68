// GPTQ (quant/gptq.h) against its calibration-free counterparts on synthetic matrices:
//   - with correlated inputs (a few shared factors plus noise, like real activations) the output error
//     Σ (ŵ − w)ᵀ H (ŵ − w) must fall well below the calibration-free quantizer's (INT4 mse; HLWQ's codec);
//   - negative control: with H = I nothing is fed forward, and the result is the calibration-free one exactly
//     (INT4: identical bytes; HLWQ l2: identical codes up to rounding ties of the rotation);
//   - the scale re-fit lowers that output error further, and with H = I it is each group's plain least-squares
//     scale for its codes (computed here independently);
//   - bad statistics are refused with a message.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/gptq.h"
#include "quant/hlwq_pack.h"
#include "quant/int4_pack.h"
#include "quant/lloyd_max.h"
#include "quant_test_data.h"

namespace hlwq {
namespace {

constexpr int64_t kOut = 48, kIn = 256, kTokens = 1024;
// GPTQ's gain on such low-rank inputs is large (measured 0.005-0.016x of the calibration-free output error); 0.7 leaves
// margin while failing if the error feedback is disabled or miswired (then the ratio is ≈ 1).
constexpr double kMaxRatioVsRtn = 0.7;

// H = XᵀX for X [T, n]: 8 shared factors with random loadings plus 0.1 independent noise per input.
std::vector<double> correlated_hessian(int64_t n, int64_t T, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  constexpr int kFactors = 8;
  std::vector<double> load(size_t(kFactors * n));
  for (double& v : load) v = nd(rng);
  std::vector<double> x(static_cast<size_t>(n)), H(static_cast<size_t>(n * n), 0.0);
  for (int64_t t = 0; t < T; ++t) {
    double fct[kFactors];
    for (double& v : fct) v = nd(rng);
    for (int64_t i = 0; i < n; ++i) {
      double s = 0.1 * nd(rng);
      for (int k = 0; k < kFactors; ++k) s += fct[k] * load[size_t(k * n + i)];
      x[size_t(i)] = s;
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) H[size_t(i * n + j)] += x[size_t(i)] * x[size_t(j)];
  }
  return H;
}

std::vector<double> identity(int64_t n) {
  std::vector<double> H(size_t(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) H[size_t(i * n + i)] = 1.0;
  return H;
}

std::vector<float> dequant(const Int4Result& r) {
  std::vector<float> w(size_t(r.out * r.in));
  int4_dequant(r.packed.data(), r.scale.data(), r.out, r.in, w.data());
  return w;
}

std::vector<float> dequant(const HlwqPacked& p, const HlwqCodebook& cb) {
  HlwqCodes c;
  c.out = p.out;
  c.in = p.in;
  c.n_blocks = p.n_blocks;
  c.codes.resize(size_t(p.out * p.n_blocks * 128));
  c.scales = p.norms;
  const int64_t rb = p.n_blocks * 16 * p.bits;
  for (int64_t o = 0; o < p.out; ++o)
    hlwq_unpack_codes(p.codes.data() + o * rb, p.n_blocks * 128, p.bits, HlwqBitOrder::lsb_first,
                      c.codes.data() + o * p.n_blocks * 128);
  std::vector<float> w(size_t(p.out * p.in));
  hlwq_decode(c, cb, w.data());
  return w;
}

TEST(Gptq, Int4BeatsRtnOnCorrelatedInputs) {
  const auto w = test::heavy_tailed_values(kOut * kIn, 11);
  const auto H = correlated_hessian(kIn, kTokens, 12);
  const double rtn = output_error(w.data(), dequant(quantize_int4(Int4Method::mse, w.data(), kOut, kIn)).data(), kOut,
                                  kIn, H.data()).rel();
  for (const bool act_order : {false, true}) {
    GptqOptions o;
    o.act_order = act_order;
    o.weighted_scales = !act_order;  // both scale rules take part
    const Int4Result q = gptq_int4(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o), o);
    const double g = output_error(w.data(), dequant(q).data(), kOut, kIn, H.data()).rel();
    EXPECT_LT(g, kMaxRatioVsRtn * rtn) << "act_order " << act_order << ": gptq " << g << " vs mse " << rtn;
    // the error sums the pipeline reports are those of the stored bytes
    EXPECT_NEAR(q.error.sq_err, weight_error(w.data(), dequant(q).data(), kOut * kIn).sq_err, 1e-6 * q.error.sq_err);
  }
}

TEST(Gptq, Int4WithIdentityHessianIsRtn) {
  const auto w = test::heavy_tailed_values(kOut * kIn, 21);
  const auto H = identity(kIn);
  for (const GptqScales s : {GptqScales::during, GptqScales::before}) {
    GptqOptions o;
    o.scales = s;
    o.weighted_scales = false;  // with H = I the importances are equal anyway, but sums in another order may tie-break
    const Int4Result g = gptq_int4(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o), o);
    const Int4Result r = quantize_int4(Int4Method::mse, w.data(), kOut, kIn);
    EXPECT_EQ(g.packed, r.packed);
    EXPECT_EQ(g.scale, r.scale);
  }
}

TEST(Gptq, HlwqBeatsCodecOnCorrelatedInputs) {
  const HlwqCodebook cb(lloyd_max_table(4));
  const int64_t in = 200;  // not a whole number of blocks: the padded tail takes part in the rotation
  const auto w = test::heavy_tailed_values(kOut * in, 31);
  const auto H = correlated_hessian(in, kTokens, 32);
  const auto Hr = hlwq_rotate_hessian(H.data(), in);
  for (const HlwqScale mode : {HlwqScale::least_squares, HlwqScale::l2_norm}) {
    const HlwqPacked base = hlwq_quantize_matrix(w.data(), kOut, in, cb, 4, HlwqBitOrder::lsb_first, mode);
    const double e0 = output_error(w.data(), dequant(base, cb).data(), kOut, in, H.data()).rel();
    GptqOptions o;
    const HlwqPacked q = gptq_hlwq(w.data(), kOut, in, gptq_factor(Hr.data(), 256, o), o, cb, 4, mode);
    const double e1 = output_error(w.data(), dequant(q, cb).data(), kOut, in, H.data()).rel();
    EXPECT_LT(e1, kMaxRatioVsRtn * e0) << "mode " << int(mode) << ": gptq " << e1 << " vs codec " << e0;
  }
}

TEST(Gptq, HlwqWithIdentityHessianIsTheCodec) {
  const HlwqCodebook cb(lloyd_max_table(4));
  const auto w = test::heavy_tailed_values(kOut * kIn, 41);
  const auto H = identity(kIn);
  const HlwqPacked base = hlwq_quantize_matrix(w.data(), kOut, kIn, cb, 4, HlwqBitOrder::lsb_first, HlwqScale::l2_norm);
  GptqOptions o;
  const HlwqPacked q = gptq_hlwq(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o), o, cb, 4, HlwqScale::l2_norm);
  EXPECT_EQ(q.norms, base.norms);
  std::vector<uint8_t> a(size_t(kOut * kIn)), b(a.size());
  hlwq_unpack_codes(q.codes.data(), int64_t(a.size()), 4, HlwqBitOrder::lsb_first, a.data());
  hlwq_unpack_codes(base.codes.data(), int64_t(b.size()), 4, HlwqBitOrder::lsb_first, b.data());
  int64_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i] != b[i];
  // The codec scales √128·H(b) in one pass, GPTQ rotates then scales: an element exactly on a cell boundary may
  // round the other way. Anything beyond a handful means the grids differ.
  EXPECT_LE(differ, int64_t(a.size()) / 1000) << differ << " of " << a.size() << " codes differ";
}

TEST(Gptq, ScaleRefitLowersTheOutputError) {
  const HlwqCodebook cb(lloyd_max_table(4));
  const auto w = test::heavy_tailed_values(kOut * kIn, 51);
  const auto H = correlated_hessian(kIn, kTokens, 52);
  const auto Hr = hlwq_rotate_hessian(H.data(), kIn);
  double int4[3], hl[3];
  for (int refit = 0; refit <= 2; ++refit) {
    GptqOptions o;
    o.refit = refit;
    int4[refit] = output_error(w.data(), dequant(gptq_int4(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o), o)).data(),
                               kOut, kIn, H.data()).rel();
    const HlwqPacked q = gptq_hlwq(w.data(), kOut, kIn, gptq_factor(Hr.data(), kIn, o), o, cb, 4,
                                   HlwqScale::least_squares);
    hl[refit] = output_error(w.data(), dequant(q, cb).data(), kOut, kIn, H.data()).rel();
  }
  // Measured here: INT4 −25 % / −38 %, HLWQ −28 % / −21 % for 1 / 2 rounds (the second column loop may choose
  // worse codes; only each re-fit is guarded). A no-op or a re-fit against the wrong Hessian gives no gain (the
  // guard rejects what does not lower the loss), so 0.1 % is a bound that fails then and holds with margin.
  EXPECT_LT(int4[1], int4[0] * 0.999) << int4[0] << " -> " << int4[1];
  EXPECT_LT(int4[2], int4[0] * 0.999) << int4[0] << " -> " << int4[2];
  EXPECT_LT(hl[1], hl[0] * 0.999) << hl[0] << " -> " << hl[1];
  EXPECT_LT(hl[2], hl[0] * 0.999) << hl[0] << " -> " << hl[2];
}

TEST(Gptq, ScaleRefitWithIdentityHessianIsTheGroupsLeastSquaresScale) {
  const auto w = test::heavy_tailed_values(kOut * kIn, 61);
  const auto H = identity(kIn);
  GptqOptions o0;
  o0.weighted_scales = false;
  const Int4Result before = gptq_int4(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o0), o0);
  GptqOptions o = o0;
  o.refit = 1;
  const Int4Result after = gptq_int4(w.data(), kOut, kIn, gptq_factor(H.data(), kIn, o), o);
  EXPECT_EQ(after.packed, before.packed);  // one round re-fits scales only, the codes stay
  const std::vector<float> q = dequant(before);
  int64_t changed = 0, n = 0;
  for (int64_t r = 0; r < kOut; ++r)
    for (int64_t g = 0; g < kIn / 128; ++g) {
      const size_t i = size_t(r * (kIn / 128) + g);
      const float s0 = bf16_to_f32(before.scale[i]);
      double qw = 0, qq = 0, e0 = 0, e1 = 0;  // codes q/s0 against w; errors at the old and the LS scale
      for (int64_t k = g * 128; k < (g + 1) * 128; ++k) {
        const double c = q[size_t(r * kIn + k)] / s0, x = w[size_t(r * kIn + k)];
        qw += c * x;
        qq += c * c;
      }
      const float ls = bf16_to_f32(f32_to_bf16(float(qw / qq)));
      for (int64_t k = g * 128; k < (g + 1) * 128; ++k) {
        const double c = q[size_t(r * kIn + k)] / s0, x = w[size_t(r * kIn + k)];
        e0 += (c * s0 - x) * (c * s0 - x);
        e1 += (c * ls - x) * (c * ls - x);
      }
      // a row takes its new scales only when they lower its loss; with H = I groups are independent
      EXPECT_EQ(bf16_to_f32(after.scale[i]), e1 < e0 ? ls : s0) << r << " " << g;
      changed += after.scale[i] != before.scale[i];
      ++n;
    }
  // mse already searched the bf16 neighbours of its scale, and bf16 has 8 significant bits: the LS scale of its
  // codes rounds to a better stored value only rarely (1 group of 96 here), but the branch must be taken.
  EXPECT_GE(changed, 1) << n;
}

TEST(Gptq, RefusesBadStatistics) {
  std::vector<double> H = identity(128);
  H[5] = std::nan("");
  EXPECT_THROW(gptq_factor(H.data(), 128, {}), Error);
  const auto w = test::gaussian_values(4 * 128, 1);
  const GptqFactor f = gptq_factor(identity(128).data(), 128, {});
  EXPECT_THROW(gptq_int4(w.data(), 2, 256, f, {}), Error);  // factor for 128 inputs, weight has 256
  std::vector<float> bad = w;
  bad[7] = INFINITY;
  EXPECT_THROW(gptq_int4(bad.data(), 4, 128, f, {}), Error);
  GptqOptions refit;
  refit.refit = 1;
  EXPECT_THROW(gptq_int4(w.data(), 4, 128, f, refit), Error);  // the factor was made without H
}

}  // namespace
}  // namespace hlwq
