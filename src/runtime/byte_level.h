// GPT-2 byte-level alphabet: every byte 0..255 maps to one printable Unicode code point so that BPE vocab
// strings never contain raw control bytes or spaces. Bytes 33–126, 161–172 and 174–255 map to themselves;
// the remaining 68 bytes map, in ascending byte order, to U+0100 + n. The map is a bijection, so
// byte_level_decode(byte_level_encode(b)) == b for every byte string b.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hlwq {

// Code point that byte b is written as inside vocab/merges strings.
char32_t byte_level_char(uint8_t b);
// Inverse of byte_level_char; nullopt for code points outside the 256-entry alphabet.
std::optional<uint8_t> byte_level_byte(char32_t cp);
// Raw bytes -> UTF-8 string of mapped code points (the vocab spelling of those bytes).
std::string byte_level_encode(std::string_view bytes);
// Vocab spelling -> raw bytes. Mirrors HF's ByteLevel decoder: a token containing any code point outside the
// alphabet (or invalid UTF-8) is passed through as its own UTF-8 bytes, unchanged.
std::string byte_level_decode(std::string_view token);

}  // namespace hlwq
