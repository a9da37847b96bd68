#include "quant/hlwq_pack.h"

#include "core/error.h"

namespace hlwq {

void hlwq_pack_codes(const uint8_t* codes, int64_t n, int bits, HlwqBitOrder order, uint8_t* packed) {
  HLWQ_CHECK(bits >= 1 && bits <= 8, "hlwq_pack_codes: bits {} must be in [1, 8]", bits);
  HLWQ_CHECK(n % 8 == 0, "hlwq_pack_codes: {} codes is not a multiple of 8", n);
  const unsigned limit = 1u << bits;
  for (int64_t g = 0; g < n / 8; ++g) {
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) {
      const uint8_t c = codes[g * 8 + i];
      HLWQ_CHECK(c < limit, "hlwq_pack_codes: code {} at index {} does not fit {} bits", c, g * 8 + i, bits);
      v |= uint64_t(c) << hlwq_group_shift(i, bits, order);
    }
    uint8_t* p = packed + g * bits;
    for (int k = 0; k < bits; ++k)
      p[k] = order == HlwqBitOrder::lsb_first ? uint8_t(v >> (8 * k)) : uint8_t(v >> (8 * (bits - 1 - k)));
  }
}

void hlwq_unpack_codes(const uint8_t* packed, int64_t n, int bits, HlwqBitOrder order, uint8_t* codes) {
  HLWQ_CHECK(bits >= 1 && bits <= 8, "hlwq_unpack_codes: bits {} must be in [1, 8]", bits);
  HLWQ_CHECK(n % 8 == 0, "hlwq_unpack_codes: {} codes is not a multiple of 8", n);
  const uint64_t mask = (uint64_t(1) << bits) - 1;
  for (int64_t g = 0; g < n / 8; ++g) {
    const uint64_t v = hlwq_group_load(packed + g * bits, bits, order);
    for (int i = 0; i < 8; ++i) codes[g * 8 + i] = uint8_t((v >> hlwq_group_shift(i, bits, order)) & mask);
  }
}

}  // namespace hlwq
