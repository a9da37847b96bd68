// Qwen3 reasoning split (vLLM's --reasoning-parser qwen3): the model's text between <think> and </think> is
// reasoning_content, the rest is content. Works on a stream: pieces may cut a tag anywhere, so a tail that could
// be the start of a tag is held until the next piece decides. When the chat template opened the think block in
// the prompt (Qwen3 with enable_thinking, Qwen3.5/3.6), generation starts inside it: start_in_reasoning.
// Invariant: the concatenation of all reasoning and content returned equals the input with the tags removed.
#pragma once
#include <string>
#include <string_view>

namespace hlwq::server {

class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(bool start_in_reasoning) : in_reasoning_(start_in_reasoning) {}
  struct Out {
    std::string reasoning, content;
  };
  Out push(std::string_view text);
  Out flush();  // the end: a held partial tag is text after all

 private:
  bool in_reasoning_;
  std::string held_;
};

}  // namespace hlwq::server
