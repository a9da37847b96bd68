#include <gtest/gtest.h>

#include <cmath>

#include "core/dtype.h"
#include "core/tensor.h"

using namespace hlwq;

TEST(DType, ParseAndSizeAllSafetensorsNames) {
  const char* names[] = {"BOOL", "U8", "I8", "U16", "I16", "F16", "BF16", "U32",
                         "I32", "F32", "U64", "I64", "F64", "F8_E4M3", "F8_E5M2"};
  const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8, 1, 1};
  for (size_t i = 0; i < 15; ++i) {
    DType t;
    ASSERT_TRUE(dtype_parse(names[i], &t)) << names[i];
    EXPECT_EQ(dtype_name(t), names[i]);
    EXPECT_EQ(dtype_size(t), sizes[i]);
  }
  DType t;
  EXPECT_FALSE(dtype_parse("bf16", &t));
  EXPECT_FALSE(dtype_parse("F4", &t));
}

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is exactly half-way between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3*2^-8 is half-way between 1+2^-7 (odd) and 1+2^-6 (even): rounds up.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(bf16_to_f32(0xc000), -2.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16RoundTripsEveryHalf) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    uint16_t x = uint16_t(h);
    float f = f16_to_f32(x);
    if (std::isnan(f)) continue;
    EXPECT_EQ(f32_to_f16(f), x) << std::hex << h;
  }
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f32_to_f16(70000.f), 0x7c00);
}

TEST(Tensor, ShapeHelpers) {
  EXPECT_EQ(shape_numel({2, 3, 4}), 24);
  EXPECT_EQ(shape_str({512, 2048}), "[512, 2048]");
  Tensor t(DType::BF16, {3, 5});
  EXPECT_EQ(t.bytes.size(), 30u);
  EXPECT_EQ(t.view().desc(), "[3, 5] BF16");
}
