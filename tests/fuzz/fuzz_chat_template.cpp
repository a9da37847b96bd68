// libFuzzer target: the chat-template parser and renderer on arbitrary template source, rendered against a
// small conversation with tools. Budgets are lowered so that each input finishes in milliseconds; hitting one
// is an hlwq::Error like any other bad template.
#include "fuzz_util.h"
#include "runtime/jinja_eval.h"
#include "runtime/jinja_parser.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace hlwq::jinja;
  static const ValueDict ctx = [] {
    const auto messages = nlohmann::ordered_json::parse(R"([
      {"role": "system", "content": "You are helpful."},
      {"role": "user", "content": "Hi <|im_end|> there"},
      {"role": "assistant", "content": "Hello", "reasoning_content": "think",
       "tool_calls": [{"function": {"name": "f", "arguments": {"a": [1, 2.5, null, true]}}}]},
      {"role": "tool", "content": "42"}])");
    const auto tools = nlohmann::ordered_json::parse(R"([{"type": "function", "function": {"name": "f",
      "parameters": {"type": "object", "properties": {"a": {"type": "array"}}}}}])");
    return ValueDict{{"messages", Value::from_json(messages)},
                     {"tools", Value::from_json(tools)},
                     {"add_generation_prompt", Value::boolean(true)},
                     {"bos_token", Value::string("<s>")},
                     {"eos_token", Value::string("<|im_end|>")}};
  }();
  RenderLimits lim;
  lim.max_steps = 20000;
  lim.max_work = 4 << 20;
  lim.max_output = 1 << 20;
  hlwq::fuzz::expect_only_hlwq_errors([&] {
    auto t = parse_template(std::string(reinterpret_cast<const char*>(data), size), "<fuzz>");
    (void)render(*t, ctx, lim);
  });
  return 0;
}
