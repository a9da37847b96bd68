// PCRE2 and utf8proc wrappers for the tokenizer. PCRE2 handles are owned by shared_ptr with their free
// functions so a RegexSplitter is copyable. Thread safety: the compiled code is read-only; the mutable match
// state (match data, match context, JIT stack) is leased per call from a small mutex-guarded pool in the shared
// compiled object, so concurrent calls never share one and a call does not pay for creating an 8 MiB JIT stack.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "runtime/pretokenizer.h"

#include <pcre2.h>
#include <utf8proc.h>

#include <cstdlib>
#include <mutex>

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

namespace {

// Everything pcre2_match mutates, for one call at a time.
struct MatchState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* ctx = nullptr;
  pcre2_jit_stack* stack = nullptr;  // only when the pattern was JIT-compiled
  MatchState() = default;
  MatchState(const MatchState&) = delete;
  MatchState& operator=(const MatchState&) = delete;
  ~MatchState() {
    pcre2_jit_stack_free(stack);
    pcre2_match_context_free(ctx);
    pcre2_match_data_free(md);
  }
};

// Idle states kept for reuse; more concurrent callers than this simply allocate and free their own.
constexpr size_t kMaxPooledStates = 64;

}  // namespace

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;  // pcre2_jit_compile succeeded (PCRE2 may be built without JIT support)
  mutable std::mutex mu;
  mutable std::vector<std::unique_ptr<MatchState>> pool;
  ~Compiled() { pcre2_code_free(code); }

  std::unique_ptr<MatchState> acquire(const std::string& where) const {
    {
      std::lock_guard lock(mu);
      if (!pool.empty()) {
        auto st = std::move(pool.back());
        pool.pop_back();
        return st;
      }
    }
    auto st = std::make_unique<MatchState>();
    st->md = pcre2_match_data_create_from_pattern(code, nullptr);
    st->ctx = pcre2_match_context_create(nullptr);
    HLWQ_CHECK(st->md && st->ctx, "{}: out of memory allocating regex match state", where);
    if (jit) {
      // `\s+(?!\S)` over a long whitespace run can exceed the 32 KiB default JIT stack; give it room to grow.
      // Without JIT there is no JIT stack to create (the call returns NULL) and pcre2_match interprets.
      st->stack = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
      HLWQ_CHECK(st->stack, "{}: out of memory allocating the regex JIT stack", where);
      pcre2_jit_stack_assign(st->ctx, nullptr, st->stack);
    }
    return st;
  }

  void release(std::unique_ptr<MatchState> st) const {
    std::lock_guard lock(mu);
    if (pool.size() < kMaxPooledStates) pool.push_back(std::move(st));
  }
};

RegexSplitter::RegexSplitter(const std::string& pattern, bool literal, const std::string& where, bool use_jit)
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
  // JIT is an optimisation only: pcre2_match interprets when the pattern was not JIT-compiled (no JIT support
  // in this PCRE2 build, or use_jit = false).
  c->jit = use_jit && pcre2_jit_compile(c->code, PCRE2_JIT_COMPLETE) == 0;
  re_ = std::move(c);
}

void RegexSplitter::split_isolated(std::string_view text, std::vector<std::string_view>& out) const {
  // Leased for this call and handed back on every exit; a state dropped by an exception is just freed.
  struct Lease {
    const Compiled& c;
    std::unique_ptr<MatchState> st;
    ~Lease() {
      if (st) c.release(std::move(st));
    }
  } lease{*re_, re_->acquire(where_)};
  pcre2_match_data* md = lease.st->md;
  pcre2_match_context* ctx = lease.st->ctx;

  const auto* subj = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t n = text.size(), pos = 0, last = 0;
  while (pos < n) {
    int rc = pcre2_match(re_->code, subj, n, pos, PCRE2_NO_UTF_CHECK, md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("{}: regex match failed at byte {}: {}", where_, pos, reinterpret_cast<char*>(msg));
    }
    PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
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
