#include "quant/finite_check.h"

#include <cstring>

namespace hlwq {

namespace {

// First element whose exponent field (mask) is all ones: Inf or NaN in every IEEE-like format.
template <class U>
size_t first_all_ones(const void* data, size_t n, U mask) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    U u;
    std::memcpy(&u, p + i * sizeof(U), sizeof(U));
    if ((u & mask) == mask) return i;
  }
  return n;
}

}  // namespace

size_t first_non_finite(DType t, const void* data, size_t n) {
  switch (t) {
    case DType::BF16: return first_all_ones<uint16_t>(data, n, 0x7F80);
    case DType::F16: return first_all_ones<uint16_t>(data, n, 0x7C00);
    case DType::F32: return first_all_ones<uint32_t>(data, n, 0x7F800000u);
    case DType::F64: return first_all_ones<uint64_t>(data, n, 0x7FF0000000000000ull);
    case DType::F8_E5M2: return first_all_ones<uint8_t>(data, n, 0x7C);
    case DType::F8_E4M3: {  // no Inf; NaN is S.1111.111
      const auto* p = static_cast<const uint8_t*>(data);
      for (size_t i = 0; i < n; ++i)
        if ((p[i] & 0x7F) == 0x7F) return i;
      return n;
    }
    default: return n;
  }
}

}  // namespace hlwq
