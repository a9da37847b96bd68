// Bit packing of HLWQ codes (docs/hlwq-format.md). Codes of `bits` bits (2..8) are packed in groups of 8, and a
// group fills exactly `bits` bytes, so a block of 128 codes is 16·bits bytes and every row starts on a byte.
//   lsb_first (hlwq's native format): code i of a group occupies bits [i·bits, (i+1)·bits) of the group read as a
//     little-endian integer — the first code sits in the lowest bits of the first byte (4 bits: code 2j in the
//     low nibble of byte j, as compressed-tensors packs INT4).
//   msb_first (the seed's hlwq-q5): the group is one big-endian bit string, code 0 in the highest bits of the
//     first byte; for 5 bits this is SPEC §4's b0 = c0<<3 | c1>>2, … (hlwq_q5_pack.h).
#pragma once
#include <cstdint>

namespace hlwq {

enum class HlwqBitOrder : uint8_t { lsb_first, msb_first };

// The 8 codes of one group as an integer: code i at bits [i·bits, …) (lsb_first) or [(7−i)·bits, …) (msb_first).
inline uint64_t hlwq_group_load(const uint8_t* p, int bits, HlwqBitOrder order) {
  uint64_t g = 0;
  if (order == HlwqBitOrder::lsb_first)
    for (int k = bits - 1; k >= 0; --k) g = (g << 8) | p[k];
  else
    for (int k = 0; k < bits; ++k) g = (g << 8) | p[k];
  return g;
}

inline int hlwq_group_shift(int i, int bits, HlwqBitOrder order) {
  return order == HlwqBitOrder::lsb_first ? i * bits : (7 - i) * bits;
}

// codes[n] (n % 8 == 0, each < 2^bits) → packed[n / 8 · bits]. Throws on a code that does not fit.
void hlwq_pack_codes(const uint8_t* codes, int64_t n, int bits, HlwqBitOrder order, uint8_t* packed);
// packed[n / 8 · bits] → codes[n] (n % 8 == 0).
void hlwq_unpack_codes(const uint8_t* packed, int64_t n, int bits, HlwqBitOrder order, uint8_t* codes);

}  // namespace hlwq
