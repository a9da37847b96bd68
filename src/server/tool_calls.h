// Tool calls in model output (vLLM's --tool-call-parser): a call is a block <tool_call>BODY</tool_call> in one of
// the two forms these models write —
//   hermes (Qwen3):         {"name": "get_weather", "arguments": {"city": "Paris"}}
//   qwen3_xml (Qwen3.5/3.6): <function=get_weather><parameter=city>Paris</parameter></function>
// (whitespace around the parts is free; an XML value loses one leading and one trailing newline and is typed by the
// tool's JSON schema: "string" parameters stay text, others are read as JSON when they parse, else kept as text).
// Works on a stream: pieces may cut a tag or a body anywhere; text that could be the start of <tool_call> is held
// until the next piece decides, and a block is held whole until it closes. A block that is not a well-formed call
// in an accepted form (or is still open at the end) is given back as text, tags included: nothing is lost and
// nothing throws. The parser runs on the raw text before the reasoning split, so a call written inside
// <think>…</think> is still a call.
// Invariant: text returned + the source blocks of the calls returned = the input, in order.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq::server {

enum class ToolCallFormat { any, hermes, qwen3_xml };

// A tool offered by the request: its name and its JSON-schema "parameters" (used to type XML values).
struct ToolSpec {
  std::string name;
  nlohmann::ordered_json parameters = nlohmann::ordered_json::object();
};

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object, as text
};

class ToolCallParser {
 public:
  ToolCallParser(ToolCallFormat format, std::vector<ToolSpec> tools)
      : format_(format), tools_(std::move(tools)) {}
  struct Out {
    std::string text;  // output that is not a call (to be split into reasoning and content)
    std::vector<ToolCall> calls;
  };
  Out push(std::string_view piece);
  Out flush();  // the end: a held partial tag or an unclosed block is text after all

  // One block's body (between the tags) read as a call; false when it is not a well-formed call.
  bool parse_body(std::string_view body, ToolCall& out) const;

 private:
  bool parse_hermes(std::string_view body, ToolCall& out) const;
  bool parse_xml(std::string_view body, ToolCall& out) const;
  ToolCallFormat format_;
  std::vector<ToolSpec> tools_;
  std::string held_;    // outside a block: a tail that may begin <tool_call>; inside: the body so far
  bool in_block_ = false;
};

}  // namespace hlwq::server
