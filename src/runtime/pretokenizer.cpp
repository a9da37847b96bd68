// PCRE2 and utf8proc wrappers for the tokenizer. PCRE2 handles are owned by shared_ptr with their free
// functions so a RegexSplitter is copyable and match data is allocated per call (thread safety: the compiled
// code is read-only, everything mutable lives on the caller's stack).
#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/pretokenizer.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>

#include "core/error.h"

namespace hlwq {

std::string normalize_nfc(std::string_view text) {
  bool ascii = true;
  for (unsigned char c : text) ascii &= c < 0x80;
  if (ascii) return std::string(text);
  utf8proc_uint8_t* dst = nullptr;
  utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                    utf8proc_ssize_t(text.size()), &dst, utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  if (n < 0) fail("NFC normalization failed: {}", utf8proc_errmsg(n));
  std::string out(reinterpret_cast<char*>(dst), size_t(n));
  std::free(dst);
  return out;
}

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(const std::string& pattern, bool literal, const std::string& where)
    : where_(where) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
  auto c = std::make_shared<Compiled>();
  c->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), opts, &err, &err_off,
                          nullptr);
  if (!c->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("{}: cannot compile regex /{}/ at offset {}: {}", where, pattern, err_off, reinterpret_cast<char*>(msg));
  }
  // JIT is an optimisation only: pcre2_match falls back to the interpreter when it is unavailable.
  pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE);
  re_ = std::move(c);
}

void RegexSplitter::split_isolated(std::string_view text, std::vector<std::string_view>& out) const {
  using MatchData = std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>;
  using MatchCtx = std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)>;
  using JitStack = std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)>;
  MatchData md(pcre2_match_data_create_from_pattern(re_->code, nullptr), &pcre2_match_data_free);
  MatchCtx ctx(pcre2_match_context_create(nullptr), &pcre2_match_context_free);
  // `\s+(?!\S)` over a long whitespace run can exceed the 32 KiB default JIT stack; give it room to grow.
  JitStack stack(pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr), &pcre2_jit_stack_free);
  HLWQ_CHECK(md && ctx && stack, "{}: out of memory allocating regex match state", where_);
  pcre2_jit_stack_assign(ctx.get(), nullptr, stack.get());

  const auto* subj = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t n = text.size(), pos = 0, last = 0;
  while (pos < n) {
    int rc = pcre2_match(re_->code, subj, n, pos, PCRE2_NO_UTF_CHECK, md.get(), ctx.get());
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("{}: regex match failed at byte {}: {}", where_, pos, reinterpret_cast<char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.get());
    size_t s = ov[0], e = ov[1];
    if (e == s) {  // empty match: no piece; step over one whole character so we stay on a boundary
      pos = s + 1;
      while (pos < n && (static_cast<unsigned char>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    if (s > last) out.push_back(text.substr(last, s - last));
    out.push_back(text.substr(s, e - s));
    last = pos = e;
  }
  if (last < n) out.push_back(text.substr(last));
}

}  // namespace hlwq
