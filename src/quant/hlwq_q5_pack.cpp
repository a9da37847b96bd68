// 8 codes of 5 bits = one 40-bit big-endian group; built in a u64 so each group is two shifts per code.
#include "quant/hlwq_q5_pack.h"

#include "core/error.h"

namespace hlwq {

std::vector<uint8_t> hlwq_q5_pack(std::span<const uint8_t> codes) {
  HLWQ_CHECK(codes.size() % 8 == 0, "hlwq_q5_pack: {} codes is not a multiple of 8", codes.size());
  std::vector<uint8_t> packed(codes.size() / 8 * 5);
  for (size_t g = 0; g < codes.size() / 8; ++g) {
    uint64_t bits = 0;
    for (size_t i = 0; i < 8; ++i) {
      const uint8_t c = codes[g * 8 + i];
      HLWQ_CHECK(c < 32, "hlwq_q5_pack: code {} at index {} does not fit 5 bits", c, g * 8 + i);
      bits = (bits << 5) | c;
    }
    for (size_t k = 0; k < 5; ++k) packed[g * 5 + k] = uint8_t(bits >> (8 * (4 - k)));
  }
  return packed;
}

void hlwq_q5_unpack(std::span<const uint8_t> packed, std::span<uint8_t> codes) {
  HLWQ_CHECK(packed.size() % 5 == 0, "hlwq_q5_unpack: {} bytes is not a multiple of 5", packed.size());
  HLWQ_CHECK(packed.size() / 5 * 8 == codes.size(), "hlwq_q5_unpack: {} bytes hold {} codes, expected {}",
             packed.size(), packed.size() / 5 * 8, codes.size());
  for (size_t g = 0; g < packed.size() / 5; ++g) {
    uint64_t bits = 0;
    for (size_t k = 0; k < 5; ++k) bits = (bits << 8) | packed[g * 5 + k];
    for (size_t i = 0; i < 8; ++i) codes[g * 8 + i] = uint8_t((bits >> (5 * (7 - i))) & 31u);
  }
}

}  // namespace hlwq
