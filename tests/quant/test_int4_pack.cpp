// compressed-tensors INT4 packing (SPEC §3): the SPEC example word and bytes, nibble order, round trip, range
// checks, and dequant with [out, in/128] scales (transposed scales must be caught).
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/int4_pack.h"

using namespace hlwq;

TEST(Int4Pack, SpecExampleWordAndBytes) {
  const int8_t q[8] = {-8, -1, 0, 1, 7, 3, -2, 5};
  const uint32_t word = int4_pack_word(q);
  EXPECT_EQ(word, 0xD6BF9870u);
  int32_t packed;
  int4_pack(q, 1, 8, &packed);
  EXPECT_EQ(uint32_t(packed), 0xD6BF9870u);
  EXPECT_LT(packed, 0);  // stored as a two's-complement int32
  if constexpr (std::endian::native == std::endian::little) {
    uint8_t bytes[4];
    std::memcpy(bytes, &packed, 4);
    EXPECT_EQ(bytes[0], 0x70);
    EXPECT_EQ(bytes[1], 0x98);
    EXPECT_EQ(bytes[2], 0xBF);
    EXPECT_EQ(bytes[3], 0xD6);
  }
  int8_t back[8];
  int4_unpack_word(word, back);
  for (int i = 0; i < 8; ++i) EXPECT_EQ(back[i], q[i]) << i;
}

TEST(Int4Pack, ReversedNibbleOrderWouldDiffer) {
  // Negative control: element 0 in the highest nibble (GPTQ-style confusion) gives another word.
  const int8_t q[8] = {-8, -1, 0, 1, 7, 3, -2, 5};
  uint32_t reversed = 0;
  for (int i = 0; i < 8; ++i) reversed |= uint32_t(q[i] + 8) << (4 * (7 - i));
  EXPECT_EQ(reversed, 0x0789FB6Du);
  EXPECT_NE(int4_pack_word(q), reversed);
}

TEST(Int4Pack, RoundTripAndRangeCheck) {
  const int64_t out = 3, in = 256;
  std::vector<int8_t> q(out * in), back(out * in);
  std::mt19937 rng(1);
  for (auto& x : q) x = int8_t(int(rng() % 16) - 8);
  std::vector<int32_t> packed(out * in / 8);
  int4_pack(q.data(), out, in, packed.data());
  int4_unpack(packed.data(), out, in, back.data());
  EXPECT_EQ(q, back);
  q[77] = 8;
  EXPECT_THROW(int4_pack(q.data(), out, in, packed.data()), Error);
  q[77] = -9;
  EXPECT_THROW(int4_pack(q.data(), out, in, packed.data()), Error);
  EXPECT_THROW(int4_pack(q.data(), 1, 12, packed.data()), Error);
}

TEST(Int4Dequant, MatchesSpecFormulaAndCatchesTransposedScales) {
  const int64_t out = 4, in = 256, ng = in / 128;
  std::vector<int8_t> q(out * in);
  std::mt19937 rng(2);
  for (auto& x : q) x = int8_t(int(rng() % 15) - 7);
  std::vector<int32_t> packed(out * in / 8);
  int4_pack(q.data(), out, in, packed.data());
  std::vector<uint16_t> scale(out * ng), scale_t(out * ng);  // [out, in/128] and its transpose [in/128, out]
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < ng; ++g) scale[o * ng + g] = f32_to_bf16(0.01f * float(1 + o * ng + g));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t g = 0; g < ng; ++g) scale_t[g * out + o] = scale[o * ng + g];
  std::vector<float> w(out * in), wt(out * in);
  int4_dequant(packed.data(), scale.data(), out, in, w.data());
  int4_dequant(packed.data(), scale_t.data(), out, in, wt.data());
  double diff = 0;
  for (int64_t n = 0; n < out; ++n) {
    for (int64_t k = 0; k < in; ++k) {
      const uint32_t word = uint32_t(packed[n * (in / 8) + k / 8]);
      const float expect = float(int((word >> (4 * (k % 8))) & 0xF) - 8) * bf16_to_f32(scale[n * ng + k / 128]);
      ASSERT_EQ(w[n * in + k], expect) << n << "," << k;
      diff += std::fabs(double(w[n * in + k]) - wt[n * in + k]);
    }
  }
  EXPECT_GT(diff / double(out * in), 1e-3);
  EXPECT_THROW(int4_dequant(packed.data(), scale.data(), 1, 64, w.data()), Error);
}
