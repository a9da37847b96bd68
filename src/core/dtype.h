// Element types of checkpoint tensors (the safetensors dtype strings) and scalar conversions.
// bf16/f16 <-> f32 conversions are exact where the format allows (round-to-nearest-even on narrowing).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace hlwq {

enum class DType : uint8_t { BOOL, U8, I8, U16, I16, F16, BF16, U32, I32, F32, U64, I64, F64, F8_E4M3, F8_E5M2 };

size_t dtype_size(DType t);
std::string_view dtype_name(DType t);  // "BF16"
// Parses a safetensors dtype string; returns false for an unknown string.
bool dtype_parse(std::string_view s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, NaN stays NaN (quiet), as torch's .to(bfloat16).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);  // round to nearest even, saturating to inf like IEEE

// Converts n elements of a floating dtype (F32, F16, BF16, F64) to f32; throws for other dtypes.
void convert_to_f32(DType t, const void* src, float* dst, size_t n);

}  // namespace hlwq
