// Nibble packing for compressed-tensors INT4. Words are handled as uint32 internally (the shift of a negative
// int32 would sign-extend) and stored in int32 buffers because the checkpoint dtype is I32.
#include "quant/int4_pack.h"

#include <cstring>

#include "core/dtype.h"
#include "core/error.h"

namespace hlwq {

uint32_t int4_pack_word(const int8_t* q) {
  uint32_t word = 0;
  for (int i = 0; i < kInt4PerWord; ++i) word |= uint32_t(uint8_t(q[i] + 8) & 0xFu) << (4 * i);
  return word;
}

void int4_unpack_word(uint32_t word, int8_t* q) {
  for (int i = 0; i < kInt4PerWord; ++i) q[i] = int8_t(int((word >> (4 * i)) & 0xFu) - 8);
}

void int4_pack(const int8_t* q, int64_t out, int64_t in, int32_t* packed) {
  HLWQ_CHECK(in % kInt4PerWord == 0, "int4_pack: in = {} is not a multiple of {}", in, kInt4PerWord);
  const int64_t n = out * in;
  for (int64_t k = 0; k < n; ++k)
    HLWQ_CHECK(q[k] >= -8 && q[k] <= 7, "int4_pack: value {} at [{}, {}] outside [-8, 7]", q[k], k / in, k % in);
  for (int64_t j = 0; j < n / kInt4PerWord; ++j) {
    const uint32_t word = int4_pack_word(q + j * kInt4PerWord);
    std::memcpy(packed + j, &word, 4);
  }
}

void int4_unpack(const int32_t* packed, int64_t out, int64_t in, int8_t* q) {
  HLWQ_CHECK(in % kInt4PerWord == 0, "int4_unpack: in = {} is not a multiple of {}", in, kInt4PerWord);
  for (int64_t j = 0; j < out * in / kInt4PerWord; ++j) int4_unpack_word(uint32_t(packed[j]), q + j * kInt4PerWord);
}

void int4_dequant_row(const int32_t* packed, const uint16_t* scale, int64_t in, float* w) {
  for (int64_t g = 0; g < in / kInt4Group; ++g) {
    const float s = bf16_to_f32(scale[g]);
    for (int j = 0; j < kInt4Group / kInt4PerWord; ++j) {
      const uint32_t word = uint32_t(packed[g * (kInt4Group / kInt4PerWord) + j]);
      float* dst = w + g * kInt4Group + j * kInt4PerWord;
      for (int i = 0; i < kInt4PerWord; ++i) dst[i] = float(int((word >> (4 * i)) & 0xFu) - 8) * s;
    }
  }
}

void int4_dequant(const int32_t* packed, const uint16_t* scale, int64_t out, int64_t in, float* w) {
  HLWQ_CHECK(in % kInt4Group == 0, "int4_dequant: in = {} is not a multiple of {}", in, kInt4Group);
#pragma omp parallel for schedule(static)
  for (int64_t o = 0; o < out; ++o)
    int4_dequant_row(packed + o * (in / kInt4PerWord), scale + o * (in / kInt4Group), in, w + o * in);
}

}  // namespace hlwq
