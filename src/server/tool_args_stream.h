// Incremental tool-call arguments: the JSON text of a call's arguments produced while the model is still writing
// the call, for OpenAI's streamed `function.arguments` deltas (clients concatenate them). One ArgsStream follows
// one call's body from the point where its header is complete; fed the body in pieces cut anywhere, it returns the
// next piece of the arguments each time, and finish() the rest — the concatenation does not depend on the cuts.
//   hermes (JSON):  after `{"name": "NAME", "arguments": ` the object `{…}` is passed through with the whitespace
//                   outside strings removed (the model's own text otherwise: its escapes and number spellings).
//   qwen3_xml:      after `<function=NAME>`, each `<parameter=P>VALUE</parameter>` becomes `"P":` and the value:
//                   for a string parameter (by the tool's schema; all of an unknown tool's) `"` + the value
//                   JSON-escaped as it arrives + `"`, with one leading and one trailing newline dropped; any other
//                   parameter at its closing tag, as JSON when it parses and else as a string.
// A body that breaks the form after the header (a repeated parameter, text outside the tags, an unclosed value)
// cannot be taken back from a stream: the arguments are closed as valid JSON where the form broke (an unclosed
// XML value runs to the end of the block) and the rest of the body is returned as text by finish().
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq::server {

class ArgsStream {
 public:
  enum class Form { hermes, xml };
  // parameters: the tool's JSON-schema "parameters" (XML values are typed by it), null when the tool is unknown.
  ArgsStream(Form form, const nlohmann::ordered_json* parameters) : form_(form), params_(parameters) {}
  // The next piece of the arguments text (may be empty: a tail that a later piece decides is held).
  std::string feed(std::string_view piece);
  struct End {
    std::string arguments;  // the last piece of the arguments text
    std::string text;       // body left over after a broken form (empty for a well-formed call)
  };
  // The block closed. body: the whole body of the block (hermes checks that it was one JSON object).
  End finish(std::string_view body);

 private:
  std::string step_hermes();
  std::string step_xml();
  std::string close_args();
  bool is_string_param(const std::string& name) const;
  enum class State { args, after, value_text, value_typed, between, broken };
  Form form_;
  const nlohmann::ordered_json* params_;
  State state_ = State::args;
  std::string pend_;  // input not yet consumed
  // hermes
  std::vector<char> stack_;  // open '{' / '[' of the arguments
  bool in_str_ = false, esc_ = false;
  // xml
  std::vector<std::string> seen_;  // parameters so far
  bool value_started_ = false;
  std::string value_;  // a typed value so far
};

// Where a call's header ends in body (the arguments start there) and its name; npos while body may still grow
// into a header (need_more) or when it cannot (then the block is read whole, as before streaming).
struct CallHeader {
  size_t end = std::string_view::npos;
  std::string name;
  bool need_more = false;
};
CallHeader hermes_header(std::string_view body);
CallHeader xml_header(std::string_view body);

}  // namespace hlwq::server
