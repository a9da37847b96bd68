// Tool calls in model output (vLLM's --tool-call-parser): a call is a block <tool_call>BODY</tool_call> in one of
// the two forms these models write —
//   hermes (Qwen3):         {"name": "get_weather", "arguments": {"city": "Paris"}}
//   qwen3_xml (Qwen3.5/3.6): <function=get_weather><parameter=city>Paris</parameter></function>
// (whitespace around the parts is free; an XML value loses one leading and one trailing newline and is typed by the
// tool's JSON schema: "string" parameters stay text, others are read as JSON when they parse, else kept as text).
// Works on a stream: pieces may cut a tag or a body anywhere; text that could be the start of <tool_call> is held
// until the next piece decides. A call is streamed: once its header is complete (`{"name": "N", "arguments": {`
// or `<function=N>`) its first delta carries the name, and the arguments' JSON text follows in pieces as the
// model writes them (tool_args_stream.h; their concatenation does not depend on how the output was cut). A block
// whose header is not one of those (arguments as JSON text, or first) is held whole and read at its end; one that
// is not a well-formed call then (or is still open at the end) is given back as text, tags included. A streamed
// call cannot be taken back: where its body breaks the form afterwards, its arguments are closed as valid JSON
// and the rest of the body is text. Nothing throws. The parser runs on the raw text before the reasoning split,
// so a call written inside <think>…</think> is still a call.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/tool_args_stream.h"

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

// A piece of a call: its first delta has the name (and perhaps arguments), later ones more arguments text.
struct ToolCallDelta {
  size_t index = 0;       // the call's number in the parser's output (0, 1, …)
  std::string name;       // non-empty in a call's first delta only
  std::string arguments;  // the next piece of the arguments' JSON text
};

class ToolCallParser {
 public:
  ToolCallParser(ToolCallFormat format, std::vector<ToolSpec> tools)
      : format_(format), tools_(std::move(tools)) {}
  struct Out {
    std::string text;  // output that is not a call (to be split into reasoning and content)
    std::vector<ToolCallDelta> calls;  // in order; one delta per call and push at most
  };
  Out push(std::string_view piece);
  Out flush();  // the end: a held partial tag or an unclosed block is text after all

 private:
  bool parse_hermes(std::string_view body, ToolCall& out) const;
  void advance(Out& out);      // a header complete: start streaming; streaming: pass the new body on
  void close_block(Out& out);  // the block ended (its body is complete)
  void add_arguments(Out& out, std::string piece) const;
  ToolCallFormat format_;
  std::vector<ToolSpec> tools_;
  std::string held_;  // outside a block: a tail that may begin <tool_call>; inside: one that may begin </tool_call>
  bool in_block_ = false;
  std::string body_;  // the block's body so far
  bool whole_ = false;  // its header is none that streams: read at the end
  std::optional<ArgsStream> stream_;  // the call being streamed
  size_t fed_ = 0;                    // bytes of body_ given to stream_
  size_t n_calls_ = 0;
};

}  // namespace hlwq::server
