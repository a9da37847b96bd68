// Test helper: crafts safetensors files byte by byte, so every header corruption can be produced on purpose.
#pragma once
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace hlwq::test {

// Writes 8-byte length + header + data; header_len_override replaces the length field when >= 0. The header is
// padded with spaces to a multiple of 8 bytes, as the safetensors library does, so that tensors are aligned to
// their dtype (the reader refuses misaligned ones); pad = false writes it exactly as given.
inline void write_raw_safetensors(const std::filesystem::path& p, std::string header, const std::string& data,
                                  int64_t header_len_override = -1, bool pad = true) {
  if (pad) header.resize((header.size() + 7) / 8 * 8, ' ');
  std::ofstream f(p, std::ios::binary);
  uint64_t n = header_len_override >= 0 ? uint64_t(header_len_override) : header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
}

}  // namespace hlwq::test
