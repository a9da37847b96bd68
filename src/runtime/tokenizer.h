// Byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json (the Qwen2/3/3.5 family).
// Supported pipeline, checked at load time (anything else is an hlwq::Error naming the file and field):
//   added_tokens  matched on the raw text first, leftmost-longest (lstrip/rstrip/single_word honoured;
//                 `normalized` is ignored: NFC leaves the ASCII contents of real added tokens unchanged);
//   normalizer    null | NFC | Sequence of NFC;
//   pre_tokenizer Split(Regex P, Isolated, invert=false)* and ByteLevel(add_prefix_space, use_regex),
//                 alone or in a Sequence (use_regex=true applies the GPT-2 pattern);
//   model         BPE with ranked merges, no dropout / byte fallback / subword affixes;
//   decoder       ByteLevel.
// No BOS is ever added. Ids: vocab ids and added-token ids share one space [0, vocab_size()); token_text
// returns a token's raw bytes (which may be a fragment of a UTF-8 character). A Tokenizer is cheap to copy
// (shared immutable state) and safe to use from several threads.
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hlwq {

struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

// Bytes [begin, end) of a text.
struct ByteRange {
  size_t begin = 0, end = 0;
};

class Tokenizer {
 public:
  static Tokenizer from_file(const std::filesystem::path& path);
  // `origin` names the source in error messages (a path, or "<test>").
  static Tokenizer from_json_text(std::string_view json_text, const std::string& origin);

  // allow_special=false treats special added tokens as plain text (non-special added tokens still match),
  // like HF's encode_special_tokens. Throws on input that is not valid UTF-8.
  std::vector<int32_t> encode(std::string_view text, bool allow_special = true) const;
  // encode(text, true), except that no special token may overlap a range in `literal`: the parts of a rendered
  // chat that a user typed are encoded as text even where they spell a control token ("<|im_end|>"), while the
  // template's own markup around them still becomes control tokens. Ranges may come in any order.
  std::vector<int32_t> encode(std::string_view text, std::span<const ByteRange> literal) const;
  // Concatenated token bytes with invalid UTF-8 replaced by U+FFFD (HF decode, skip_special_tokens=False).
  std::string decode(const std::vector<int32_t>& ids) const;
  // Raw bytes of one token (added tokens: their content). Throws on an id outside the vocabulary.
  const std::string& token_text(int32_t id) const;
  // Id whose raw bytes are exactly `text` (added tokens win over vocab entries with the same bytes).
  std::optional<int32_t> token_id(std::string_view text) const;
  int32_t vocab_size() const;
  const std::vector<AddedToken>& added_tokens() const;

  struct Impl;

 private:
  std::vector<int32_t> encode_impl(std::string_view text, bool allow_special, std::span<const ByteRange> literal) const;
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace hlwq
