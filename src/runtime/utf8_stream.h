// UTF-8 helpers and the streaming detokenizer. Tokens are byte strings that may end in the middle of a
// multi-byte character (an emoji is often split over 2–4 byte-level tokens), so streamed text is released
// only in whole characters. Invariant: the concatenation of everything a StreamingDetokenizer returns
// (pushes plus flush) equals Tokenizer::decode of the same ids, byte for byte — invalid bytes become U+FFFD
// exactly as Rust's String::from_utf8_lossy does (one U+FFFD per maximal invalid subpart).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

namespace hlwq {

class Tokenizer;

// Append code point cp (must be a valid scalar value) to out as UTF-8.
void utf8_append(std::string& out, char32_t cp);
// Decode the character starting at s[i]: {code point, length}; length 0 when the bytes there are not a
// complete valid UTF-8 sequence.
std::pair<char32_t, size_t> utf8_decode_one(std::string_view s, size_t i);
// Byte offset of the first invalid UTF-8 byte in s, or s.size() when s is entirely valid.
size_t utf8_first_invalid(std::string_view s);
// s with every maximal invalid subpart replaced by U+FFFD (from_utf8_lossy semantics).
std::string utf8_lossy(std::string_view s);

// Byte-level UTF-8 repair for a stream: push() returns the longest releasable prefix (complete characters,
// invalid subparts already replaced); an incomplete but so-far-valid tail is held back. flush() releases the
// held tail as a single U+FFFD (a truncated sequence), or "" when nothing is held.
class Utf8Stream {
 public:
  std::string push(std::string_view bytes);
  std::string flush();
  size_t held_bytes() const { return pending_.size(); }

 private:
  std::string pending_;  // at most 3 bytes: a valid prefix of one multi-byte character
};

// Streaming detokenizer over a Tokenizer: feed ids one at a time, receive only complete UTF-8 text.
// Holds a reference: the tokenizer must outlive it.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok) : tok_(&tok) {}
  std::string feed(int32_t id);
  std::string flush() { return stream_.flush(); }

 private:
  const Tokenizer* tok_;
  Utf8Stream stream_;
};

}  // namespace hlwq
