// GPT-2 byte <-> code point tables, built once (function-local static, immutable after construction) from the
// closed-form rule rather than a 256-entry literal, so the mapping's definition is visible in one loop.
#include "runtime/byte_level.h"

#include <array>

#include "runtime/utf8_stream.h"

namespace hlwq {
namespace {

struct ByteTables {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 324> from_cp{};  // code points used are all < 0x100 + 68
};

const ByteTables& tables() {
  static const ByteTables t = [] {
    ByteTables r;
    r.from_cp.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      char32_t cp = printable ? char32_t(b) : char32_t(0x100 + n++);
      r.to_cp[b] = cp;
      r.from_cp[cp] = int16_t(b);
    }
    return r;
  }();
  return t;
}

}  // namespace

char32_t byte_level_char(uint8_t b) { return tables().to_cp[b]; }

std::optional<uint8_t> byte_level_byte(char32_t cp) {
  const auto& t = tables();
  if (cp >= t.from_cp.size() || t.from_cp[cp] < 0) return std::nullopt;
  return uint8_t(t.from_cp[cp]);
}

std::string byte_level_encode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) utf8_append(out, byte_level_char(b));
  return out;
}

std::string byte_level_decode(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  size_t i = 0;
  while (i < token.size()) {
    auto [cp, len] = utf8_decode_one(token, i);
    std::optional<uint8_t> b = len > 0 ? byte_level_byte(cp) : std::nullopt;
    if (!b) return std::string(token);  // HF falls back to the token's own bytes, whole token at once
    out.push_back(char(*b));
    i += len;
  }
  return out;
}

}  // namespace hlwq
