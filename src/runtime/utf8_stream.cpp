// UTF-8 scanning shared by the tokenizer (input validation, lossy decode) and streaming detokenization.
// The scanner classifies each position as a complete character, an incomplete-but-valid prefix that runs
// into the end of the buffer, or an invalid maximal subpart (Unicode §3.9 "substitution of maximal subparts",
// which is what Rust's from_utf8_lossy — and therefore HF tokenizers' decode — implements).
#include "runtime/utf8_stream.h"

#include "runtime/tokenizer.h"

namespace hlwq {
namespace {

enum class Scan { Complete, Incomplete, Invalid };

struct ScanResult {
  Scan kind;
  size_t len;  // bytes consumed: character length, prefix length, or invalid subpart length (>= 1)
};

// Valid range for the second byte given the lead byte; later continuation bytes are always 80..BF.
bool second_byte_ok(unsigned char lead, unsigned char b) {
  switch (lead) {
    case 0xE0: return b >= 0xA0 && b <= 0xBF;  // no overlong 3-byte forms
    case 0xED: return b >= 0x80 && b <= 0x9F;  // no surrogates
    case 0xF0: return b >= 0x90 && b <= 0xBF;  // no overlong 4-byte forms
    case 0xF4: return b >= 0x80 && b <= 0x8F;  // nothing above U+10FFFF
    default: return b >= 0x80 && b <= 0xBF;
  }
}

ScanResult scan(std::string_view s, size_t i) {
  auto lead = static_cast<unsigned char>(s[i]);
  size_t need;
  if (lead < 0x80) return {Scan::Complete, 1};
  if (lead >= 0xC2 && lead <= 0xDF) need = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) need = 3;
  else if (lead >= 0xF0 && lead <= 0xF4) need = 4;
  else return {Scan::Invalid, 1};
  for (size_t k = 1; k < need; ++k) {
    if (i + k >= s.size()) return {Scan::Incomplete, k};
    auto b = static_cast<unsigned char>(s[i + k]);
    bool ok = k == 1 ? second_byte_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) return {Scan::Invalid, k};
  }
  return {Scan::Complete, need};
}

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// Appends the repaired form of s[0, n) to out and returns the number of bytes consumed; stops before an
// incomplete tail when hold_tail is set.
size_t repair(std::string_view s, std::string& out, bool hold_tail) {
  size_t i = 0;
  while (i < s.size()) {
    ScanResult r = scan(s, i);
    if (r.kind == Scan::Complete) {
      out.append(s.substr(i, r.len));
    } else if (r.kind == Scan::Incomplete && hold_tail) {
      return i;
    } else {
      out.append(kReplacement);
    }
    i += r.len;
  }
  return i;
}

}  // namespace

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

std::pair<char32_t, size_t> utf8_decode_one(std::string_view s, size_t i) {
  ScanResult r = scan(s, i);
  if (r.kind != Scan::Complete) return {0, 0};
  auto b0 = static_cast<unsigned char>(s[i]);
  if (r.len == 1) return {b0, 1};
  char32_t cp = b0 & (0xFF >> (r.len + 1));
  for (size_t k = 1; k < r.len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  return {cp, r.len};
}

size_t utf8_first_invalid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    ScanResult r = scan(s, i);
    if (r.kind != Scan::Complete) return i;
    i += r.len;
  }
  return i;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  repair(s, out, /*hold_tail=*/false);
  return out;
}

std::string Utf8Stream::push(std::string_view bytes) {
  pending_.append(bytes);
  std::string out;
  size_t used = repair(pending_, out, /*hold_tail=*/true);
  pending_.erase(0, used);
  return out;
}

std::string Utf8Stream::flush() {
  std::string out;
  repair(pending_, out, /*hold_tail=*/false);
  pending_.clear();
  return out;
}

std::string StreamingDetokenizer::feed(int32_t id) { return stream_.push(tok_->token_text(id)); }

}  // namespace hlwq
