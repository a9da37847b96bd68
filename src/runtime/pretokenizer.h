// Text normalization and pre-tokenization pieces of the tokenizer pipeline: NFC via utf8proc and regex
// splitting via PCRE2 (UTF + UCP so \p{L}, \s, etc. are Unicode-aware, JIT-compiled where available).
// Split semantics follow HF tokenizers' SplitDelimiterBehavior::Isolated: every match becomes its own piece and
// the unmatched gaps between matches are kept as pieces too; empty matches produce nothing.
// Input must already be valid UTF-8 (the tokenizer validates once, so matching skips PCRE2's UTF check).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hlwq {

// NFC of valid UTF-8 text (ASCII is returned unchanged without calling into utf8proc).
std::string normalize_nfc(std::string_view text);

// The GPT-2 pre-tokenizer pattern HF's ByteLevel(use_regex=true) applies.
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  // `where` names the origin (file and field) for compile errors. literal=true matches `pattern` verbatim
  // (HF's Split with {"String": ...}). use_jit=false forces PCRE2's interpreter, as on builds without JIT
  // support (tests compare both paths).
  RegexSplitter(const std::string& pattern, bool literal, const std::string& where, bool use_jit = true);
  // Appends the Isolated split of `text` to `out` (views into `text`).
  void split_isolated(std::string_view text, std::vector<std::string_view>& out) const;

  struct Compiled;

 private:
  std::shared_ptr<const Compiled> re_;
  std::string where_;
};

}  // namespace hlwq
