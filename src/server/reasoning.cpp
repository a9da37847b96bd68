#include "server/reasoning.h"

#include <algorithm>

namespace hlwq::server {

namespace {
constexpr std::string_view kOpen = "<think>", kClose = "</think>";

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}
}  // namespace

ReasoningSplitter::Out ReasoningSplitter::push(std::string_view text) {
  Out out;
  std::string buf = held_ + std::string(text);
  held_.clear();
  std::string_view rest = buf;
  for (;;) {
    const std::string_view tag = in_reasoning_ ? kClose : kOpen;
    std::string& dst = in_reasoning_ ? out.reasoning : out.content;
    const size_t at = rest.find(tag);
    if (at == std::string_view::npos) {
      const size_t keep = partial_tag(rest, tag);
      dst += rest.substr(0, rest.size() - keep);
      held_ = std::string(rest.substr(rest.size() - keep));
      return out;
    }
    dst += rest.substr(0, at);
    rest.remove_prefix(at + tag.size());
    in_reasoning_ = !in_reasoning_;
  }
}

ReasoningSplitter::Out ReasoningSplitter::flush() {
  Out out;
  (in_reasoning_ ? out.reasoning : out.content) = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace hlwq::server
