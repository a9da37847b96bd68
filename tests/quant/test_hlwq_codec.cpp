// HLWQ codec: nearest-centroid search, encode/decode vs a direct double-precision reference of SPEC §4, tail
// padding, zero blocks, the least-squares scale, and the seed's Q5 bit packing (exact bytes, MSB-first).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hlwq_codec.h"
#include "quant/hlwq_q5_pack.h"
#include "quant/lloyd_max.h"
#include "quant_test_data.h"

using namespace hlwq;

namespace {

constexpr int kB = 128;

int brute_nearest(const std::vector<float>& c, float z) {
  int best = 0;
  for (int k = 1; k < int(c.size()); ++k)
    if (std::fabs(z - c[k]) < std::fabs(z - c[best])) best = k;
  return best;
}

double rel_mse(const std::vector<float>& w, const std::vector<float>& d) {
  double e = 0, r = 0;
  for (size_t i = 0; i < w.size(); ++i) e += double(d[i] - w[i]) * (d[i] - w[i]), r += double(w[i]) * w[i];
  return e / r;
}

}  // namespace

TEST(HlwqCodebook, NearestIsExactArgminBothSearchPaths) {
  for (int bits : {3, 5, 8}) {  // ≤ 32 levels: counting path; 256: binary search
    const auto& c = lloyd_max_table(bits);
    const HlwqCodebook cb(c);
    std::vector<float> z = test::gaussian_values(4 * kB, 100 + bits, 1.5f);
    std::vector<int> expect(z.size());
    for (size_t i = 0; i < z.size(); ++i) expect[i] = brute_nearest(c, z[i]);
    for (size_t i = 0; i + 1 < c.size(); i += 3) {  // exact midpoints: the tie goes to the lower index
      z[2 * i] = (c[i] + c[i + 1]) * 0.5f;
      expect[2 * i] = int(i);
    }
    z[1] = 1e6f, expect[1] = int(c.size()) - 1;
    z[3] = -1e6f, expect[3] = 0;
    for (size_t b = 0; b < z.size() / kB; ++b) {
      uint8_t codes[kB];
      cb.nearest_block(z.data() + b * kB, codes);
      for (size_t j = 0; j < kB; ++j) {
        ASSERT_EQ(codes[j], expect[b * kB + j]) << bits << " bits, z " << z[b * kB + j];
        ASSERT_EQ(cb.nearest(z[b * kB + j]), expect[b * kB + j]);
      }
    }
  }
}

TEST(HlwqCodebook, RejectsBadTables) {
  EXPECT_THROW(HlwqCodebook(std::vector<float>{1.0f}), Error);
  EXPECT_THROW(HlwqCodebook(std::vector<float>{0.0f, 1.0f, 1.0f}), Error);
  EXPECT_THROW(HlwqCodebook(std::vector<float>(257, 0.0f)), Error);
}

TEST(HlwqCodec, EncodeMatchesDoubleReference) {
  const auto& c = lloyd_max_table(4);
  const HlwqCodebook cb(c);
  const int64_t out = 6, in = 256;
  const auto w = test::heavy_tailed_values(out * in, 21);
  const HlwqCodes enc = hlwq_encode(w.data(), out, in, cb);
  ASSERT_EQ(enc.n_blocks, 2);
  int mismatches = 0;
  for (int64_t blk = 0; blk < out * enc.n_blocks; ++blk) {
    const float* b = w.data() + blk * kB;
    double r = 0;
    for (int j = 0; j < kB; ++j) r += double(b[j]) * b[j];
    r = std::sqrt(r);
    EXPECT_EQ(enc.scales[blk], f32_to_f16(float(r))) << blk;
    for (int i = 0; i < kB; ++i) {
      double z = 0;  // √128 · H(b/r) = Σ_j ±b_j / r
      for (int j = 0; j < kB; ++j) z += (__builtin_popcount(i & j) & 1 ? -b[j] : b[j]) / r;
      const int expect = brute_nearest(c, float(z));
      if (enc.codes[blk * kB + i] != expect) {
        ++mismatches;  // allowed only where z sits on a cell boundary within float rounding
        const float m = (c[std::min<int>(expect, enc.codes[blk * kB + i])] +
                         c[std::max<int>(expect, enc.codes[blk * kB + i])]) * 0.5f;
        EXPECT_NEAR(z, m, 1e-5);
      }
    }
  }
  EXPECT_LE(mismatches, 2);
}

TEST(HlwqCodec, DecodeMatchesFormula) {
  const auto& c = lloyd_max_table(5);
  const HlwqCodebook cb(c);
  HlwqCodes enc;
  enc.out = 1, enc.in = kB, enc.n_blocks = 1;
  enc.codes.resize(kB);
  std::mt19937 rng(5);
  for (auto& x : enc.codes) x = uint8_t(rng() % 32);
  enc.scales = {f32_to_f16(3.3f)};
  std::vector<float> w(kB);
  hlwq_decode(enc, cb, w.data());
  const double r = f16_to_f32(enc.scales[0]);  // decode uses the fp16-rounded scale
  for (int i = 0; i < kB; ++i) {
    double v = 0;
    for (int j = 0; j < kB; ++j) v += (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) * c[enc.codes[j]] / kB;
    ASSERT_NEAR(w[i], r * v, 1e-5) << i;
  }
  enc.codes[3] = 32;  // out of range for a 32-level table
  EXPECT_THROW(hlwq_decode(enc, cb, w.data()), Error);
}

TEST(HlwqCodec, TailIsZeroPadded) {
  const HlwqCodebook cb(lloyd_max_table(4));
  const int64_t out = 3, in = 200, in_pad = 256;
  const auto w = test::gaussian_values(out * in, 8);
  std::vector<float> wp(out * in_pad, 0.0f);
  for (int64_t o = 0; o < out; ++o) std::copy(w.begin() + o * in, w.begin() + (o + 1) * in, wp.begin() + o * in_pad);
  const HlwqCodes a = hlwq_encode(w.data(), out, in, cb), b = hlwq_encode(wp.data(), out, in_pad, cb);
  EXPECT_EQ(a.codes, b.codes);
  EXPECT_EQ(a.scales, b.scales);
  std::vector<float> da(out * in), db(out * in_pad), rt(in);
  hlwq_decode(a, cb, da.data());
  hlwq_decode(b, cb, db.data());
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < in; ++k) ASSERT_EQ(da[o * in + k], db[o * in_pad + k]);
    hlwq_roundtrip_row(w.data() + o * in, in, cb, HlwqScale::l2_norm, rt.data());
    for (int64_t k = 0; k < in; ++k) ASSERT_EQ(rt[k], da[o * in + k]);
  }
}

TEST(HlwqCodec, ZeroBlockDecodesToZero) {
  const HlwqCodebook cb(lloyd_max_table(4));
  std::vector<float> w(kB, 0.0f), d(kB, 1.0f);
  for (HlwqScale mode : {HlwqScale::l2_norm, HlwqScale::least_squares}) {
    hlwq_roundtrip_row(w.data(), kB, cb, mode, d.data());
    for (float x : d) ASSERT_EQ(x, 0.0f);
  }
}

TEST(HlwqCodec, ErrorTracksLloydMaxAndLeastSquaresHelps) {
  const int64_t out = 64, in = 1024;
  const auto w = test::gaussian_values(out * in, 77, 0.02f);
  std::vector<float> d(w.size());
  double prev = 1.0;
  for (int bits : {3, 4, 5}) {
    const HlwqCodebook cb(lloyd_max_table(bits));
    hlwq_decode(hlwq_encode(w.data(), out, in, cb), cb, d.data());
    const double l2 = rel_mse(w, d);
    // Coordinates of H(b/r)·√128 are ≈ N(0, 1), so the relative error is close to the table's Gaussian MSE.
    const double lm = gaussian_quant_mse(std::span<const float>(lloyd_max_table(bits)));
    EXPECT_NEAR(l2, lm, 0.1 * lm) << bits;
    EXPECT_LT(l2, prev);
    prev = l2;
    hlwq_decode(hlwq_encode(w.data(), out, in, cb, HlwqScale::least_squares), cb, d.data());
    EXPECT_LT(rel_mse(w, d), 0.995 * l2) << bits;  // measured: 1.5–2 % lower on Gaussian data
  }
  // The seed's unconverged Q5 table is measurably worse than the converged one.
  const HlwqCodebook seed(seed_q5_table()), lm5(lloyd_max_table(5));
  hlwq_decode(hlwq_encode(w.data(), out, in, seed), seed, d.data());
  const double e_seed = rel_mse(w, d);
  hlwq_decode(hlwq_encode(w.data(), out, in, lm5), lm5, d.data());
  EXPECT_GT(e_seed, 1.1 * rel_mse(w, d));
}

TEST(HlwqQ5Pack, KnownPatternPacksToHandComputedBytes) {
  // b0=c0<<3|c1>>2, b1=(c1&3)<<6|c2<<1|c3>>4, b2=(c3&15)<<4|c4>>1, b3=(c4&1)<<7|c5<<2|c6>>3, b4=(c6&7)<<5|c7
  // [1,2,3,4,5,6,7,31]: b0 = 8|0, b1 = 128|6|0, b2 = 64|2, b3 = 128|24|0, b4 = 224|31.
  // [31,0,31,0,31,0,31,0]: bit string (11111 00000)×4 = F8 3E 0F 83 E0.
  const std::vector<uint8_t> codes = {1, 2, 3, 4, 5, 6, 7, 31, 31, 0, 31, 0, 31, 0, 31, 0};
  const std::vector<uint8_t> expect = {0x08, 0x86, 0x42, 0x98, 0xFF, 0xF8, 0x3E, 0x0F, 0x83, 0xE0};
  EXPECT_EQ(hlwq_q5_pack(codes), expect);
  std::vector<uint8_t> back(codes.size());
  hlwq_q5_unpack(expect, back);
  EXPECT_EQ(back, codes);
}

TEST(HlwqQ5Pack, LsbFirstPackingWouldDiffer) {
  // Negative control: codes laid out LSB-first (c0 in the low bits of a little-endian 40-bit word).
  const std::vector<uint8_t> codes = {1, 2, 3, 4, 5, 6, 7, 31};
  uint64_t bits = 0;
  for (int i = 0; i < 8; ++i) bits |= uint64_t(codes[i]) << (5 * i);
  std::vector<uint8_t> lsb(5);
  for (int k = 0; k < 5; ++k) lsb[k] = uint8_t(bits >> (8 * k));
  EXPECT_NE(hlwq_q5_pack(codes), lsb);
}

TEST(HlwqQ5Pack, RandomStreamsMatchSpecFormulaAndRoundTrip) {
  std::mt19937 rng(9);
  std::vector<uint8_t> c(8 * 1000);
  for (auto& x : c) x = uint8_t(rng() % 32);
  const auto packed = hlwq_q5_pack(c);
  ASSERT_EQ(packed.size(), c.size() / 8 * 5);
  for (size_t g = 0; g < c.size() / 8; ++g) {
    const uint8_t* k = &c[g * 8];
    const uint8_t b[5] = {uint8_t(k[0] << 3 | k[1] >> 2), uint8_t((k[1] & 3) << 6 | k[2] << 1 | k[3] >> 4),
                          uint8_t((k[3] & 15) << 4 | k[4] >> 1), uint8_t((k[4] & 1) << 7 | k[5] << 2 | k[6] >> 3),
                          uint8_t((k[6] & 7) << 5 | k[7])};
    for (int i = 0; i < 5; ++i) ASSERT_EQ(packed[g * 5 + i], b[i]) << g;
  }
  std::vector<uint8_t> back(c.size());
  hlwq_q5_unpack(packed, back);
  EXPECT_EQ(back, c);
}

TEST(HlwqQ5Pack, RejectsBadInput) {
  EXPECT_THROW(hlwq_q5_pack(std::vector<uint8_t>(7, 0)), Error);
  std::vector<uint8_t> c(8, 0);
  c[5] = 32;
  EXPECT_THROW(hlwq_q5_pack(c), Error);
  std::vector<uint8_t> out(8);
  EXPECT_THROW(hlwq_q5_unpack(std::vector<uint8_t>(4, 0), out), Error);
  EXPECT_THROW(hlwq_q5_unpack(std::vector<uint8_t>(10, 0), out), Error);
}
