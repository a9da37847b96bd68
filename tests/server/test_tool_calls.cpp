// ToolCallParser on scripted model output (both forms, malformed blocks, every two-cut stream), and the OpenAI
// mapping of ResponseWriter on scripted event streams: tool_calls in the message and as stream deltas, a call
// written before </think> closes, finish_reason "tool_calls", streamed and non-streamed results equal.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "server/openai_api.h"
#include "server/tool_calls.h"

namespace hlwq::server {
namespace {

using json = nlohmann::ordered_json;

const std::vector<ToolSpec> kTools = {
    {"get_weather", json::parse(R"({"type": "object", "properties": {"city": {"type": "string"},
                                    "days": {"type": "integer"}, "opts": {"type": "object"}}})")}};

struct Whole {
  std::string text;
  std::vector<ToolCall> calls;  // the deltas put together
  std::vector<int> deltas;      // [calls] deltas that carried arguments text
};

void apply(Whole& w, const ToolCallParser::Out& o) {
  w.text += o.text;
  for (const ToolCallDelta& d : o.calls) {
    if (!d.name.empty()) {
      ASSERT_EQ(d.index, w.calls.size());
      w.calls.push_back({d.name, ""});
      w.deltas.push_back(0);
    } else {
      ASSERT_LT(d.index, w.calls.size());
      ASSERT_EQ(d.index, w.calls.size() - 1) << "a delta for a call other than the last";
    }
    w.calls[d.index].arguments += d.arguments;
    w.deltas[d.index] += !d.arguments.empty();
  }
}

Whole parse_pieces(const std::vector<std::string>& pieces, ToolCallFormat f = ToolCallFormat::any) {
  ToolCallParser p(f, kTools);
  Whole w;
  for (const auto& piece : pieces) apply(w, p.push(piece));
  apply(w, p.flush());
  return w;
}

TEST(ToolCalls, HermesJson) {
  auto w = parse_pieces({"Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                         "\"Paris\"}}\n</tool_call>"});
  EXPECT_EQ(w.text, "Let me check.\n");
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(w.calls[0].arguments), json::parse(R"({"city": "Paris"})"));
}

TEST(ToolCalls, HermesArgumentsAsTextAndMissing) {
  auto w = parse_pieces({"<tool_call>{\"name\": \"a\", \"arguments\": \"{\\\"x\\\": 1}\"}</tool_call>"
                         "<tool_call>{\"name\": \"b\"}</tool_call>"});
  EXPECT_EQ(w.text, "");
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(json::parse(w.calls[0].arguments), json::parse(R"({"x": 1})"));
  EXPECT_EQ(w.calls[1].name, "b");
  EXPECT_EQ(w.calls[1].arguments, "{}");
}

TEST(ToolCalls, Qwen3XmlTypedBySchema) {
  auto w = parse_pieces({"<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n"
                         "<parameter=days>\n3\n</parameter>\n<parameter=opts>\n{\"unit\": \"C\"}\n</parameter>\n"
                         "</function>\n</tool_call>\ntail"});
  EXPECT_EQ(w.text, "\ntail");
  ASSERT_EQ(w.calls.size(), 1u);
  EXPECT_EQ(w.calls[0].name, "get_weather");
  EXPECT_EQ(json::parse(w.calls[0].arguments), json::parse(R"({"city": "New York", "days": 3, "opts": {"unit": "C"}})"));
}

TEST(ToolCalls, Qwen3XmlStringParamStaysText) {
  // "city" is a string in the schema: "123" stays text; an unknown tool's parameters are text too.
  auto w = parse_pieces({"<tool_call><function=get_weather><parameter=city>123</parameter></function></tool_call>"
                         "<tool_call><function=other><parameter=n>5</parameter></function></tool_call>"});
  ASSERT_EQ(w.calls.size(), 2u);
  EXPECT_EQ(json::parse(w.calls[0].arguments), json::parse(R"({"city": "123"})"));
  EXPECT_EQ(json::parse(w.calls[1].arguments), json::parse(R"({"n": "5"})"));
}

TEST(ToolCalls, FormatRestrictsWhatIsParsed) {
  const std::string hermes = "<tool_call>{\"name\": \"a\"}</tool_call>";
  const std::string xml = "<tool_call><function=a></function></tool_call>";
  EXPECT_EQ(parse_pieces({hermes}, ToolCallFormat::qwen3_xml).text, hermes);
  EXPECT_EQ(parse_pieces({xml}, ToolCallFormat::hermes).text, xml);
  EXPECT_EQ(parse_pieces({hermes + xml}, ToolCallFormat::any).calls.size(), 2u);
}

TEST(ToolCalls, MalformedBlocksStayText) {
  for (const std::string bad : {
           "<tool_call>not json</tool_call>",
           "<tool_call>{\"name\": 5}</tool_call>",
           "<tool_call>{\"name\": \"a\", \"arguments\": [1]}</tool_call>",
           "<tool_call>{\"name\": \"a\", \"arguments\": \"nope\"}</tool_call>",
           "<tool_call>{\"name\": \"a\"</tool_call>",
           "<tool_call><function=>x</function></tool_call>",
           "<tool_call><function=a b></function></tool_call>",
           "<tool_call></tool_call>",
           "<tool_call>{\"name\": \"a\"}",  // never closed
           "<tool_call",                     // a partial tag at the end
           "</tool_call> <tool_call><tool_call>",
       }) {
    auto w = parse_pieces({bad});
    EXPECT_EQ(w.text, bad);
    EXPECT_TRUE(w.calls.empty()) << bad;
  }
}

TEST(ToolCalls, StreamedXmlCallBrokenLaterKeepsTheRestAsText) {
  // Once <function=NAME> is complete the call has been streamed: a form broken later closes its arguments there.
  struct Case {
    std::string body, args, text;
  };
  for (const Case& c : std::vector<Case>{
           {"<function=a><parameter=x>1</function>", R"({"x":"1</function>"})", ""},  // a value runs to </parameter>
           {"<function=a><parameter=x>1</parameter><parameter=x>2</parameter></function>", R"({"x":"1"})",
            "<parameter=x>2</parameter></function>"},
           {"<function=a></function>junk", "{}", "junk"},
           {"<function=a>junk", "{}", "junk"},
           {"<function=get_weather><parameter=days>\n4", R"({"days":"\n4"})", ""},
       }) {
    for (const bool closed : {true, false}) {
      const std::string in = "<tool_call>" + c.body + (closed ? "</tool_call>" : "");
      const Whole w = parse_pieces({in});
      ASSERT_EQ(w.calls.size(), 1u) << in;
      EXPECT_EQ(w.calls[0].name, c.body.starts_with("<function=a>") ? "a" : "get_weather");
      EXPECT_EQ(w.calls[0].arguments, c.args) << in;
      EXPECT_TRUE(json::accept(w.calls[0].arguments)) << in;
      EXPECT_EQ(w.text, c.text) << in;
    }
  }
}

TEST(ToolCalls, ArgumentsStreamPiecewiseAndJoinToTheWholeOnAnyCuts) {
  const std::vector<std::pair<std::string, std::string>> calls = {
      {"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"S\\u00e3o \\\"P\\\" </x>\", "
       "\"opts\": {\"n\": [1, 2.5e3, true]}}}\n</tool_call>",
       R"({"city":"S\u00e3o \"P\" </x>","opts":{"n":[1,2.5e3,true]}})"},
      {"<tool_call>\n<function=get_weather>\n<parameter=city>\nNew\n\"York\" \\ é😀 </para\n\n</parameter>\n"
       "<parameter=days>\n3\n</parameter>\n<parameter=opts>\n{\"unit\": \"C\"}\n</parameter>\n</function>\n</tool_call>",
       R"({"city":"New\n\"York\" \\ é😀 </para\n","days":3,"opts":{"unit":"C"}})"},
  };
  for (const auto& [text, args] : calls) {
    const Whole ref = parse_pieces({"x" + text + "y"});
    ASSERT_EQ(ref.calls.size(), 1u) << text;
    EXPECT_EQ(ref.text, "xy");
    EXPECT_EQ(ref.calls[0].name, "get_weather");
    EXPECT_EQ(ref.calls[0].arguments, args);
    EXPECT_TRUE(json::accept(args));
    // byte by byte: the arguments come in many deltas, before the block closes
    std::vector<std::string> bytes;
    for (char ch : text) bytes.emplace_back(1, ch);
    const Whole b = parse_pieces(bytes);
    ASSERT_EQ(b.calls.size(), 1u);
    EXPECT_EQ(b.calls[0].arguments, args);
    EXPECT_GT(b.deltas[0], 10);
    for (size_t i = 0; i <= text.size(); ++i)
      for (size_t j = i; j <= text.size(); j += 3) {
        const Whole w = parse_pieces({text.substr(0, i), text.substr(i, j - i), text.substr(j)});
        ASSERT_EQ(w.calls.size(), 1u) << i << "," << j;
        ASSERT_EQ(w.calls[0].arguments, args) << i << "," << j;
        ASSERT_EQ(w.text, "") << i << "," << j;
      }
  }
}

TEST(ToolCalls, EveryTwoCutStreamMatchesWhole) {
  const std::string text =
      "a<tool<tool_call>{\"name\": \"f\", \"arguments\": {\"k\": \"<v>\"}}</tool_call>b<tool_call>bad</tool_call>"
      "<tool_call>\n<function=g>\n<parameter=p>\nx < y\n</parameter>\n</function>\n</tool_call><tool_ca";
  const Whole ref = parse_pieces({text});
  ASSERT_EQ(ref.calls.size(), 2u);
  EXPECT_EQ(ref.text, "a<toolb<tool_call>bad</tool_call><tool_ca");
  EXPECT_EQ(json::parse(ref.calls[1].arguments), json::parse(R"({"p": "x < y"})"));
  for (size_t i = 0; i <= text.size(); ++i)
    for (size_t j = i; j <= text.size(); ++j) {
      const Whole w = parse_pieces({text.substr(0, i), text.substr(i, j - i), text.substr(j)});
      ASSERT_EQ(w.text, ref.text) << i << "," << j;
      ASSERT_EQ(w.calls.size(), ref.calls.size()) << i << "," << j;
      for (size_t k = 0; k < w.calls.size(); ++k) {
        ASSERT_EQ(w.calls[k].name, ref.calls[k].name);
        ASSERT_EQ(w.calls[k].arguments, ref.calls[k].arguments);
      }
    }
}

// ResponseWriter: the OpenAI mapping of a scripted stream of engine events.
ApiRequest chat_request(bool reasoning_open) {
  ApiRequest r;
  r.endpoint = Endpoint::chat;
  r.reasoning_starts_open = reasoning_open;
  r.tool_format = ToolCallFormat::any;
  r.tools = kTools;
  return r;
}

StreamEvent delta(std::string text) {
  StreamEvent ev;
  ev.text = std::move(text);
  return ev;
}

StreamEvent finish(FinishReason why) {
  StreamEvent ev;
  ev.kind = StreamEvent::Kind::finish;
  ev.finish = why;
  return ev;
}

// The chunks of an SSE body, [DONE] excluded.
std::vector<json> sse_chunks(const std::string& body) {
  std::vector<json> out;
  size_t pos = 0;
  while ((pos = body.find("data: ", pos)) != std::string::npos) {
    const size_t end = body.find("\n\n", pos);
    const std::string data = body.substr(pos + 6, end - pos - 6);
    if (data != "[DONE]") out.push_back(json::parse(data));
    pos = end;
  }
  return out;
}

TEST(ToolCallsApi, CallBeforeThinkClosesStreamedAndWhole) {
  // Qwen3.5 writing its call inside the think block the template opened, then ending its turn.
  const std::vector<std::string> pieces = {"I need the wea", "ther.\n<tool_", "call>\n<function=get_weather>\n<para",
                                           "meter=city>\nParis\n</parameter>\n</function>\n</tool_call>"};
  ResponseWriter whole(chat_request(true), "m", 0);
  for (const auto& p : pieces) whole.add(delta(p));
  const json full = json::parse(whole.full(finish(FinishReason::eos)));
  const json& msg = full["choices"][0]["message"];
  EXPECT_EQ(full["choices"][0]["finish_reason"], "tool_calls");
  EXPECT_EQ(msg["reasoning_content"], "I need the weather.\n");
  EXPECT_TRUE(msg["content"].is_null());
  ASSERT_EQ(msg["tool_calls"].size(), 1u);
  EXPECT_EQ(msg["tool_calls"][0]["type"], "function");
  EXPECT_EQ(msg["tool_calls"][0]["function"]["name"], "get_weather");
  EXPECT_EQ(json::parse(msg["tool_calls"][0]["function"]["arguments"].get<std::string>()), json::parse(R"({"city": "Paris"})"));
  EXPECT_EQ(msg["tool_calls"][0]["id"].get<std::string>().rfind("call_", 0), 0u);

  ResponseWriter stream(chat_request(true), "m", 0);
  std::string body = stream.sse_start();
  for (const auto& p : pieces) body += stream.sse_delta(delta(p));
  body += stream.sse_finish(finish(FinishReason::eos));
  std::string reasoning, content, args, name, finish_reason;
  int calls = 0;
  for (const json& c : sse_chunks(body)) {
    const json& ch = c["choices"][0];
    const json& d = ch["delta"];
    reasoning += d.value("reasoning_content", "");
    content += d.value("content", "");
    if (d.contains("tool_calls"))
      for (const json& tc : d["tool_calls"]) {
        EXPECT_EQ(tc["index"], 0);
        if (tc.contains("id")) ++calls;
        name += tc["function"].value("name", "");
        args += tc["function"].value("arguments", "");
      }
    if (!ch["finish_reason"].is_null()) finish_reason = ch["finish_reason"];
  }
  EXPECT_EQ(reasoning, msg["reasoning_content"]);
  EXPECT_EQ(content, "");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(name, "get_weather");
  EXPECT_EQ(args, msg["tool_calls"][0]["function"]["arguments"]);
  EXPECT_EQ(finish_reason, "tool_calls");
}

TEST(ToolCallsApi, TwoHermesCallsIndexedAndLengthFinishKept) {
  ResponseWriter w(chat_request(false), "m", 0);
  std::string body = w.sse_start();
  body += w.sse_delta(delta("<think>plan</think>\n\nCalling.<tool_call>{\"name\": \"a\"}</tool_call>"));
  body += w.sse_delta(delta("<tool_call>{\"name\": \"b\", \"arguments\": {}}</tool_call><tool_call>{\"na"));
  body += w.sse_finish(finish(FinishReason::length));  // cut off inside a third call: it stays text
  std::vector<int> indexes;
  std::string content, finish_reason;
  for (const json& c : sse_chunks(body)) {
    const json& d = c["choices"][0]["delta"];
    content += d.value("content", "");
    if (d.contains("tool_calls"))
      for (const json& tc : d["tool_calls"]) indexes.push_back(tc["index"]);
    if (!c["choices"][0]["finish_reason"].is_null()) finish_reason = c["choices"][0]["finish_reason"];
  }
  EXPECT_EQ(indexes, (std::vector<int>{0, 1}));
  EXPECT_EQ(content, "\n\nCalling.<tool_call>{\"na");
  EXPECT_EQ(finish_reason, "length");
}

TEST(ToolCallsApi, WithoutToolsNothingIsParsed) {
  ApiRequest r = chat_request(false);
  r.tool_format.reset();
  ResponseWriter w(r, "m", 0);
  const std::string text = "<tool_call>{\"name\": \"a\"}</tool_call>";
  w.add(delta(text));
  const json full = json::parse(w.full(finish(FinishReason::eos)));
  EXPECT_EQ(full["choices"][0]["message"]["content"], text);
  EXPECT_FALSE(full["choices"][0]["message"].contains("tool_calls"));
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
}

}  // namespace
}  // namespace hlwq::server
