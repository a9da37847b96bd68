// The seed's "hlwq-q5" code stream (SPEC §4, for interop): 5-bit codes packed MSB-first, 8 codes → 5 bytes:
//   b0 = c0<<3 | c1>>2,  b1 = (c1&3)<<6 | c2<<1 | c3>>4,  b2 = (c3&15)<<4 | c4>>1,
//   b3 = (c4&1)<<7 | c5<<2 | c6>>3,  b4 = (c6&7)<<5 | c7.
// I.e. the codes form one big-endian bit string. The stream holds the codes of a whole [out, n_blocks, 128]
// tensor, so its length is always a multiple of 8.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace hlwq {

// codes[n] (each < 32, n % 8 == 0) → packed[n/8 * 5].
std::vector<uint8_t> hlwq_q5_pack(std::span<const uint8_t> codes);
// packed[n/8 * 5] → codes[n]; n = packed.size()/5 * 8 must equal codes.size().
void hlwq_q5_unpack(std::span<const uint8_t> packed, std::span<uint8_t> codes);

}  // namespace hlwq
