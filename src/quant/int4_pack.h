// compressed-tensors `pack-quantized` INT4 storage (SPEC §3), vLLM type uint4b8, group 128, symmetric.
// q ∈ [−8, 7] is stored as u = q + 8; element 8j + i of a row sits in bits 4i..4i+3 of int32 word j (lowest index
// in the lowest nibble), words little-endian two's complement on disk. Example: q = [−8,−1,0,1,7,3,−2,5] → word
// 0xD6BF9870 → bytes 70 98 BF D6. Dequant: w[n,k] = (nibble(packed[n, k/8], k%8) − 8) · bf16 scale[n, k/128].
// This is the transpose of GPTQ's qweight. Dimension legend: out = rows (output features), in = inputs.
#pragma once
#include <cstdint>

namespace hlwq {

inline constexpr int kInt4Group = 128;
inline constexpr int kInt4PerWord = 8;

// q[8] (each in [−8, 7]) → one packed word.
uint32_t int4_pack_word(const int8_t* q);
// word → q[8].
void int4_unpack_word(uint32_t word, int8_t* q);

// q [out, in] → packed [out, in/8]; in % 8 == 0; throws on a value outside [−8, 7].
void int4_pack(const int8_t* q, int64_t out, int64_t in, int32_t* packed);
// packed [out, in/8] → q [out, in].
void int4_unpack(const int32_t* packed, int64_t out, int64_t in, int8_t* q);
// packed [in/8], scale [in/128] (bf16 bits) → w [in]; in % 128 == 0.
void int4_dequant_row(const int32_t* packed, const uint16_t* scale, int64_t in, float* w);
// packed [out, in/8], scale [out, in/128] (bf16 bits) → w [out, in].
void int4_dequant(const int32_t* packed, const uint16_t* scale, int64_t out, int64_t in, float* w);

}  // namespace hlwq
