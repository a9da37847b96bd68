// HLWQ code packing (exact bytes of both bit orders, against hand-computed groups and the seed's independent Q5
// packer) and the HLWQ matmul kernels: row decode against the codec, the scalar and AVX2 GEMV against
// dequantize-then-matmul in double precision, the kernels' row decode bit-identical to the reference decode, for every width, both bit orders, ragged
// shapes; a flipped code order must not pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hlwq_codec.h"
#include "quant/hlwq_linear.h"
#include "quant/hlwq_pack.h"
#include "quant/hlwq_q5_pack.h"
#include "quant/hlwq_quant.h"
#include "quant/lloyd_max.h"
#include "quant_test_data.h"

using namespace hlwq;

namespace {

// fp32 kernels vs a double-precision dot of the dequantized weights: FMA contraction and summation order.
constexpr double kGemvRelTol = 1e-5;

std::vector<uint8_t> random_codes(int64_t n, int bits, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> c(static_cast<size_t>(n));
  for (auto& x : c) x = uint8_t(rng() % (1u << bits));
  return c;
}

std::vector<const HlwqKernels*> kernel_sets() {
  std::vector<const HlwqKernels*> k{&hlwq_kernels_scalar()};
  if (&hlwq_kernels(true) != &hlwq_kernels_scalar()) k.push_back(&hlwq_kernels(true));
  return k;
}

// A quantized random matrix plus its view; codes re-packed in `order` when it is msb_first.
struct Fixture {
  HlwqPacked q;
  std::vector<float> table;
  HlwqMatrixView v;
  Fixture(int64_t out, int64_t in, int bits, HlwqBitOrder order, uint32_t seed)
      : table(lloyd_max_table(bits)) {
    const std::vector<float> w = test::heavy_tailed_values(out * in, seed);
    q = hlwq_quantize_matrix(w.data(), out, in, HlwqCodebook(table), bits, order, HlwqScale::least_squares);
    v.out = out;
    v.in = in;
    v.bits = bits;
    v.order = order;
    v.codes = q.codes.data();
    v.norms = q.norms.data();
    v.codebook = table.data();
  }
};

}  // namespace

TEST(HlwqPack, LsbFirstBytesAreExact) {
  // 4 bits: code 2j in the low nibble of byte j (compressed-tensors' nibble order)
  const uint8_t c4[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  uint8_t p4[4];
  hlwq_pack_codes(c4, 8, 4, HlwqBitOrder::lsb_first, p4);
  EXPECT_EQ(std::vector<uint8_t>(p4, p4 + 4), (std::vector<uint8_t>{0x10, 0x32, 0x54, 0x76}));
  // 3 bits: Σ c_i·8^i = 0x1F58D1, little-endian
  const uint8_t c3[8] = {1, 2, 3, 4, 5, 6, 7, 0};
  uint8_t p3[3];
  hlwq_pack_codes(c3, 8, 3, HlwqBitOrder::lsb_first, p3);
  EXPECT_EQ(std::vector<uint8_t>(p3, p3 + 3), (std::vector<uint8_t>{0xD1, 0x58, 0x1F}));
  // 5 bits: Σ c_i·32^i, little-endian
  const uint8_t c5[8] = {3, 1, 4, 1, 5, 9, 2, 6};
  uint8_t p5[5];
  hlwq_pack_codes(c5, 8, 5, HlwqBitOrder::lsb_first, p5);
  EXPECT_EQ(std::vector<uint8_t>(p5, p5 + 5), (std::vector<uint8_t>{0x23, 0x90, 0x50, 0x92, 0x30}));
}

TEST(HlwqPack, MsbFirstFiveBitsIsTheSeedStream) {
  const std::vector<uint8_t> codes = random_codes(128 * 6, 5, 7);
  std::vector<uint8_t> ours(codes.size() / 8 * 5);
  hlwq_pack_codes(codes.data(), int64_t(codes.size()), 5, HlwqBitOrder::msb_first, ours.data());
  EXPECT_EQ(ours, hlwq_q5_pack(codes));  // the independent packer of SPEC §4's byte formulas
  std::vector<uint8_t> lsb(ours.size());
  hlwq_pack_codes(codes.data(), int64_t(codes.size()), 5, HlwqBitOrder::lsb_first, lsb.data());
  EXPECT_NE(lsb, ours);  // the orders really differ
}

TEST(HlwqPack, RoundTripsEveryWidthAndOrder) {
  for (int bits = 2; bits <= 8; ++bits)
    for (const auto order : {HlwqBitOrder::lsb_first, HlwqBitOrder::msb_first}) {
      const std::vector<uint8_t> codes = random_codes(256, bits, uint32_t(bits));
      std::vector<uint8_t> packed(256 / 8 * size_t(bits)), back(256);
      hlwq_pack_codes(codes.data(), 256, bits, order, packed.data());
      hlwq_unpack_codes(packed.data(), 256, bits, order, back.data());
      EXPECT_EQ(back, codes) << bits << " bits";
    }
}

TEST(HlwqPack, RefusesCodesThatDoNotFit) {
  const uint8_t c[8] = {0, 0, 0, 8, 0, 0, 0, 0};
  uint8_t p[3];
  EXPECT_THROW(hlwq_pack_codes(c, 8, 3, HlwqBitOrder::lsb_first, p), Error);
  EXPECT_THROW(hlwq_pack_codes(c, 7, 4, HlwqBitOrder::lsb_first, p), Error);
}

TEST(HlwqLinear, DecodeRowEqualsTheCodec) {
  // The view's row decode must give exactly what the codec decodes from the same codes and scales.
  for (const int64_t in : {int64_t(256), int64_t(300)}) {
    const int64_t out = 5;
    const std::vector<float> w = test::gaussian_values(out * in, 11);
    const HlwqCodebook cb(lloyd_max_table(4));
    const HlwqCodes ref = hlwq_encode(w.data(), out, in, cb, HlwqScale::l2_norm);
    std::vector<float> want(size_t(out * in));
    hlwq_decode(ref, cb, want.data());
    Fixture f(out, in, 4, HlwqBitOrder::lsb_first, 0);
    f.q = hlwq_quantize_matrix(w.data(), out, in, cb, 4, HlwqBitOrder::lsb_first, HlwqScale::l2_norm);
    f.v.codes = f.q.codes.data();
    f.v.norms = f.q.norms.data();
    EXPECT_EQ(f.q.norms, ref.scales);
    std::vector<float> got(static_cast<size_t>(in));
    for (int64_t r = 0; r < out; ++r) {
      hlwq_decode_row(f.v, r, got.data());
      for (int64_t k = 0; k < in; ++k) ASSERT_EQ(got[size_t(k)], want[size_t(r * in + k)]) << r << "," << k;
    }
  }
}

TEST(HlwqLinear, GemvMatchesDequantizedMatmulEveryWidthOrderAndKernel) {
  for (const HlwqKernels* k : kernel_sets())
    for (int bits = 2; bits <= 8; ++bits)
      for (const auto order : {HlwqBitOrder::lsb_first, HlwqBitOrder::msb_first})
        for (const int64_t in : {int64_t(384), int64_t(200)}) {
          const int64_t out = 19, nt = 5, inp = (in + 127) / 128 * 128;
          Fixture f(out, in, bits, order, uint32_t(bits * 10 + int(order)));
          const std::vector<float> x = test::gaussian_values(nt * in, 3);
          // reference: W dequantized (weight domain), dot in double
          std::vector<float> wrow(static_cast<size_t>(in));
          std::vector<double> want(size_t(nt * out));
          double scale = 0;
          for (int64_t r = 0; r < out; ++r) {
            hlwq_decode_row(f.v, r, wrow.data());
            for (int64_t t = 0; t < nt; ++t) {
              double s = 0;
              for (int64_t c = 0; c < in; ++c) s += double(wrow[size_t(c)]) * x[size_t(t * in + c)];
              want[size_t(t * out + r)] = s;
              scale = std::max(scale, std::fabs(s));
            }
          }
          std::vector<float> xp(size_t(nt * inp));
          for (int64_t t = 0; t < nt; ++t) k->prepare(x.data() + t * in, in, bits, xp.data() + t * inp);
          // gemv over two row ranges (a panel split), all tokens at once
          std::vector<float> y(size_t(nt * out), NAN);
          k->gemv(f.v, 0, 7, xp.data(), inp, nt, y.data(), out);
          k->gemv(f.v, 7, out - 7, xp.data(), inp, nt, y.data() + 7, out);
          // the prefill path: rows decoded to the weight domain, exactly the reference decode
          std::vector<float> rows(static_cast<size_t>(out * in));
          k->decode_rows(f.v, 3, out - 3, rows.data());
          for (int64_t r = 3; r < out; ++r) {
            hlwq_decode_row(f.v, r, wrow.data());
            ASSERT_EQ(std::memcmp(rows.data() + (r - 3) * in, wrow.data(), size_t(in) * 4), 0)
                << k->isa << " decode_rows, bits " << bits << " order " << int(order) << " in " << in << " r " << r;
          }
          for (int64_t t = 0; t < nt; ++t)
            for (int64_t r = 0; r < out; ++r)
              ASSERT_NEAR(y[size_t(t * out + r)], want[size_t(t * out + r)], kGemvRelTol * scale)
                  << k->isa << " bits " << bits << " order " << int(order) << " in " << in << " t " << t << " r " << r;
        }
}

TEST(HlwqLinear, FlippedCodeOrderFails) {
  // Negative control: LSB-first codes read as MSB-first (or the reverse) must give visibly wrong products.
  for (const HlwqKernels* k : kernel_sets())
    for (const int bits : {3, 4, 5}) {
      Fixture f(16, 256, bits, HlwqBitOrder::lsb_first, 5);
      const std::vector<float> x = test::gaussian_values(256, 9);
      std::vector<float> xp(256), good(16), bad(16);
      k->prepare(x.data(), 256, bits, xp.data());
      k->gemv(f.v, 0, 16, xp.data(), 256, 1, good.data(), 16);
      HlwqMatrixView flipped = f.v;
      flipped.order = HlwqBitOrder::msb_first;
      k->gemv(flipped, 0, 16, xp.data(), 256, 1, bad.data(), 16);
      double diff = 0, norm = 0;
      for (int r = 0; r < 16; ++r) diff += std::fabs(good[r] - bad[r]), norm += std::fabs(good[r]);
      EXPECT_GT(diff, 0.3 * norm) << k->isa << " " << bits << " bits";
    }
}

TEST(HlwqLinear, ViewCheckRefusesBadViews) {
  Fixture f(4, 128, 4, HlwqBitOrder::lsb_first, 1);
  EXPECT_NO_THROW(hlwq_check_view(f.v, "w"));
  HlwqMatrixView v = f.v;
  v.bits = 9;
  EXPECT_THROW(hlwq_check_view(v, "w"), Error);
  v = f.v;
  std::vector<float> t = f.table;
  std::swap(t[3], t[4]);
  v.codebook = t.data();
  EXPECT_THROW(hlwq_check_view(v, "w"), Error);
  v = f.v;
  v.norms = nullptr;
  EXPECT_THROW(hlwq_check_view(v, "w"), Error);
}
