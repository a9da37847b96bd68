#include "core/dtype.h"

#include <array>
#include <cmath>

#include "core/error.h"

namespace hlwq {
namespace {

struct DTypeInfo {
  DType t;
  std::string_view name;
  size_t size;
};

constexpr std::array<DTypeInfo, 15> kTable = {{
    {DType::BOOL, "BOOL", 1}, {DType::U8, "U8", 1},       {DType::I8, "I8", 1},
    {DType::U16, "U16", 2},   {DType::I16, "I16", 2},     {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::U32, "U32", 4},     {DType::I32, "I32", 4},
    {DType::F32, "F32", 4},   {DType::U64, "U64", 8},     {DType::I64, "I64", 8},
    {DType::F64, "F64", 8},   {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F8_E5M2, "F8_E5M2", 1},
}};

}  // namespace

size_t dtype_size(DType t) { return kTable[size_t(t)].size; }
std::string_view dtype_name(DType t) { return kTable[size_t(t)].name; }

bool dtype_parse(std::string_view s, DType* out) {
  for (const auto& e : kTable) {
    if (e.name == s) {
      *out = e.t;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t man = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: value = man * 2^-24
      float f = std::ldexp(float(man), -24);
      std::memcpy(&u, &f, 4);
      u |= sign;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (man << 13);
  } else {
    u = sign | ((exp + 112) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = uint16_t((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint16_t(sign | 0x7e00);  // NaN
  if (a >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                   // below the smallest normal 2^-14: subnormal
    // value / 2^-24, rounded to nearest even by the FPU's default mode
    float v = std::nearbyint(std::ldexp(std::fabs(f), 24));
    return uint16_t(sign | uint16_t(v));
  }
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);  // round mantissa to 10 bits, ties to even
  return uint16_t(sign | uint16_t(((r >> 23) - 112) << 10 | ((r >> 13) & 0x3ff)));
}

void convert_to_f32(DType t, const void* src, float* dst, size_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, n * 4);
      return;
    case DType::BF16: {
      // restrict: without it GCC will not vectorize (it cannot rule out src/dst overlap at -O2)
      const auto* __restrict s = static_cast<const uint16_t*>(src);
      float* __restrict d = dst;
      for (size_t i = 0; i < n; ++i) d[i] = bf16_to_f32(s[i]);
      return;
    }
    case DType::F16: {
      const auto* s = static_cast<const uint16_t*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = f16_to_f32(s[i]);
      return;
    }
    case DType::F64: {
      const auto* s = static_cast<const double*>(src);
      for (size_t i = 0; i < n; ++i) dst[i] = float(s[i]);
      return;
    }
    default:
      fail("convert_to_f32: dtype {} is not a floating type", dtype_name(t));
  }
}

}  // namespace hlwq
