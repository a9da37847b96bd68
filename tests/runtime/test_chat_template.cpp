// Chat template tests: the real Qwen3 template rendered for several conversations (expected strings derived
// by reading the template), the ChatML fallback and our 8k model's template, Jinja subset semantics
// (whitespace control, scoping, namespace, macros, filters, slicing), and errors for unsupported syntax.
#include <gtest/gtest.h>

#include <fstream>

#include "core/error.h"
#include "runtime/chat_template.h"
#include "runtime/jinja_eval.h"
#include "runtime/jinja_parser.h"
#include "test_paths.h"

namespace hlwq {
namespace {

using ojson = nlohmann::ordered_json;
namespace fs = std::filesystem;

std::string render_src(const std::string& src, const ojson& vars = ojson::object()) {
  auto t = jinja::parse_template(src, "<test>");
  jinja::ValueDict ctx;
  for (auto it = vars.begin(); it != vars.end(); ++it) ctx.emplace_back(it.key(), jinja::Value::from_json(it.value()));
  return jinja::render(*t, ctx);
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

const std::vector<ChatMessage> kConversation{
    {"system", "You are helpful."},
    {"user", "Hi"},
    {"assistant", "Hello! How can I help?"},
    {"user", "Tell me a joke."},
};

TEST(ChatTemplate, Qwen3SystemUserAssistantUser) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  ChatTemplate t = ChatTemplate::from_model_dir(test::shared_dir() / "fixtures" / "qwen3-tokenizer");
  EXPECT_FALSE(t.is_fallback());
  EXPECT_EQ(t.eos_token(), "<|im_end|>");
  // No tools: the system message is emitted up front and skipped in the loop (loop.first); the assistant
  // turn precedes the last user query, so it gets no <think> block; enable_thinking is undefined.
  EXPECT_EQ(render_chat(t, kConversation, true),
            "<|im_start|>system\nYou are helpful.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n"
            "<|im_start|>user\nTell me a joke.<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(render_chat(t, std::vector<ChatMessage>{{"user", "Hi"}}, false), "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, Qwen3ThinkingAndEnableThinkingFalse) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  ChatTemplate t = ChatTemplate::from_model_dir(test::shared_dir() / "fixtures" / "qwen3-tokenizer");
  // The final assistant turn comes after the last user query: its reasoning is split out of the content
  // at </think> and re-emitted in a normalised <think> block.
  ojson msgs = ojson::array({{{"role", "user"}, {"content", "2+2?"}},
                             {{"role", "assistant"}, {"content", "<think>\nadd them\n</think>\n\n4"}}});
  EXPECT_EQ(render_chat(t, msgs, false),
            "<|im_start|>user\n2+2?<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nadd them\n</think>\n\n4<|im_end|>\n");
  ojson one = ojson::array({{{"role", "user"}, {"content", "hi"}}});
  EXPECT_EQ(render_chat(t, one, true, {{"enable_thinking", false}}),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
}

TEST(ChatTemplate, Qwen3ToolsAndToolCalls) {
  HLWQ_REQUIRE_SHARED("qwen3-tokenizer");
  ChatTemplate t = ChatTemplate::from_model_dir(test::shared_dir() / "fixtures" / "qwen3-tokenizer");
  ojson tool = {{"type", "function"},
                {"function", {{"name", "get_weather"},
                              {"parameters", {{"type", "object"}, {"properties", {{"city", {{"type", "string"}}}}}}}}}};
  ojson msgs = ojson::array(
      {{{"role", "user"}, {"content", "Weather in Paris?"}},
       {{"role", "assistant"},
        {"content", ""},
        {"tool_calls", ojson::array({{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}})}},
       {{"role", "tool"}, {"content", "{\"temp\": 20}"}}});
  EXPECT_EQ(render_chat(t, msgs, true, {{"tools", ojson::array({tool})}}),
            "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
            "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", "
            "\"properties\": {\"city\": {\"type\": \"string\"}}}}}\n</tools>\n\n"
            "For each function call, return a json object with function name and arguments within "
            "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
            "<args-json-object>}\n</tool_call><|im_end|>\n"
            "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
            "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n"
            "</tool_call><|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n{\"temp\": 20}\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, ChatMlFallbackAndOursTemplate) {
  const std::string want =
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
      "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nTell me a joke.<|im_end|>\n";
  ChatTemplate fb = ChatTemplate::from_model_dir(test::scratch_dir("no_template"));
  EXPECT_TRUE(fb.is_fallback());
  EXPECT_EQ(render_chat(fb, kConversation, false), want);
  EXPECT_EQ(render_chat(fb, kConversation, true), want + "<|im_start|>assistant\n");
  ChatTemplate ours = ChatTemplate::from_model_dir(test::source_dir() / "testdata" / "tokenizer");
  EXPECT_FALSE(ours.is_fallback());
  EXPECT_EQ(ours.eos_token(), "<|endoftext|>");
  EXPECT_EQ(render_chat(ours, kConversation, true), want + "<|im_start|>assistant\n");
}

TEST(ChatTemplate, JinjaFilePreferredAndBosEosVariables) {
  fs::path dir = test::scratch_dir("jinja_file");
  std::ofstream(dir / "tokenizer_config.json")
      << R"({"chat_template": "ignored", "bos_token": {"content": "<s>"}, "eos_token": "</s>"})";
  std::ofstream(dir / "chat_template.jinja") << "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{% endfor %}{{ eos_token }}\n";
  ChatTemplate t = ChatTemplate::from_model_dir(dir);
  EXPECT_EQ(render_chat(t, kConversation, false), "<s>[system][user][assistant][user]</s>");
}

TEST(Jinja, WhitespaceControlTrimAndLstripBlocks) {
  // trim_blocks eats the newline after %}, lstrip_blocks the indentation before {%; {{ }} keeps both.
  EXPECT_EQ(render_src("a\n  {% if true %}\n    x\n  {% endif %}\nb"), "a\n    x\nb");
  EXPECT_EQ(render_src("a  {%- if true -%}  x  {%- endif -%}  b"), "axb");
  EXPECT_EQ(render_src("  {{ 'v' }}\n"), "  v");  // one trailing newline of the template is dropped
  EXPECT_EQ(render_src("a {# note #}\nb"), "a b");
  EXPECT_EQ(render_src("  {%+ if true %}x{% endif %}"), "  x");
}

TEST(Jinja, LoopScopeNamespaceAndLoopVars) {
  const char* src =
      "{% set n = 0 %}{% set ns = namespace(total=0) %}"
      "{% for x in xs %}{% set n = n + x %}{% set ns.total = ns.total + x %}"
      "{{ loop.index0 }}{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.previtem if not loop.first }},"
      "{% endfor %}|{{ n }}|{{ ns.total }}";
  EXPECT_EQ(render_src(src, {{"xs", {1, 2, 3}}}), "0F,11,2L2,|0|6");
  EXPECT_EQ(render_src("{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", {{"d", {{"a", 1}, {"b", "x"}}}}),
            "a=1;b=x;");
  EXPECT_EQ(render_src("{% for x in xs if x > 1 %}{{ x }}{% else %}none{% endfor %}", {{"xs", {1, 2, 3}}}), "23");
  EXPECT_EQ(render_src("{% for x in xs %}{{ x }}{% else %}none{% endfor %}", {{"xs", ojson::array()}}), "none");
  EXPECT_EQ(render_src("{% for x in xs %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}"
                       "{% endif %}{{ x }}{% endfor %}",
                       {{"xs", {1, 2, 3, 4, 5}}}),
            "13");
}

TEST(Jinja, ExpressionsFiltersAndMethods) {
  ojson v = {{"s", "  Hello World \n"}, {"xs", {1, 2, 3}}, {"m", {{"role", "user"}, {"content", "a</think>b"}}}};
  EXPECT_EQ(render_src("{{ s|trim }}|{{ s.strip().split(' ')[-1] }}|{{ xs|length }}", v), "Hello World|World|3");
  EXPECT_EQ(render_src("{{ xs[::-1] }}|{{ xs[1:] }}|{{ 'abc'[1] }}|{{ xs|join('-') }}", v), "[3, 2, 1]|[2, 3]|b|1-2-3");
  EXPECT_EQ(render_src("{{ m.content.split('</think>')[0] }}{{ '</think>' in m.content }}{{ 'x' not in m }}", v),
            "aTrueTrue");
  EXPECT_EQ(render_src("{{ m.nope is defined }}{{ m.role is string }}{{ none is none }}{{ m is mapping }}"
                       "{{ xs is iterable }}{{ false is false }}",
                       v),
            "FalseTrueTrueTrueTrueTrue");
  EXPECT_EQ(render_src("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 7 / 2 }}|{{ 'a' ~ 1 ~ none }}|{{ 2 ** 10 }}"),
            "7|3|2|3.5|a1None|1024");
  EXPECT_EQ(render_src("{{ m|tojson }}|{{ {'k': [1, 2.5, true, none]}|tojson }}", v),
            "{\"role\": \"user\", \"content\": \"a</think>b\"}|{\"k\": [1, 2.5, true, null]}");
  EXPECT_EQ(render_src("{{ 'é\"\n'|tojson }}|{{ 'é'|tojson(ensure_ascii=true) }}"), "\"é\\\"\\n\"|\"\\u00e9\"");
  EXPECT_EQ(render_src("{{ x|default('d') }}|{{ 'AbC'|lower }}{{ 'é'|upper }}|{{ 'a-b-c'.replace('-', '') }}"), "d|abcÉ|abc");
  EXPECT_EQ(render_src("{{ 'x'.startswith(('a', 'x')) }}{{ 'xyz'.endswith('z') }}{{ 'xx\n'.rstrip('\n') }}"),
            "TrueTruexx");
  EXPECT_EQ(render_src("{{ xs|map('string')|join }}|{{ xs|select('odd')|list }}", v), "123|[1, 3]");
  EXPECT_EQ(render_src("{{ 'yes' if xs else 'no' }}{{ 'y' if none else 'n' }}{{ (1, 2)|length }}", v), "yesn2");
}

TEST(Jinja, MacrosWithDefaultsAndOuterNamespace) {
  const char* src =
      "{%- set count = namespace(value=0) %}"
      "{%- macro item(content, tag='p', bump=false) %}"
      "{%- if bump %}{%- set count.value = count.value + 1 %}{%- endif %}"
      "<{{ tag }}>{{ content }}</{{ tag }}>"
      "{%- endmacro %}"
      "{{- item('a') }}{{ item('b', 'q', true)|trim }}{{ item(content='c', bump=true) }}{{ count.value }}";
  EXPECT_EQ(render_src(src), "<p>a</p><q>b</q><p>c</p>2");
  EXPECT_NE(error_of([&] { render_src("{% macro m(a) %}{% endmacro %}{{ m(1, 2) }}"); }).find("takes 1 arguments"),
            std::string::npos);
}

TEST(Jinja, ErrorsNameConstructAndPosition) {
  std::string e = error_of([] { render_src("line one\n{% include 'x.j2' %}"); });
  EXPECT_NE(e.find("unsupported tag {% include %}"), std::string::npos) << e;
  EXPECT_NE(e.find("line 2, column 4"), std::string::npos) << e;
  e = error_of([] { render_src("x{% endif %}"); });
  EXPECT_NE(e.find("unexpected {% endif %}"), std::string::npos) << e;
  e = error_of([] { render_src("{{ x|frobnicate }}"); });
  EXPECT_NE(e.find("unsupported filter 'frobnicate'"), std::string::npos) << e;
  e = error_of([] { render_src("{% if true %}x"); });
  EXPECT_NE(e.find("expected {% endif %}"), std::string::npos) << e;
  e = error_of([] { render_src("{{ raise_exception('No messages provided.') }}"); });
  EXPECT_NE(e.find("No messages provided."), std::string::npos) << e;
  e = error_of([] { render_src("{{ nothing.attr }}"); });
  EXPECT_NE(e.find("'nothing' is undefined"), std::string::npos) << e;
  e = error_of([] { render_src("{{ 'a' + 1 }}"); });
  EXPECT_NE(e.find("unsupported operand types for +: string and int"), std::string::npos) << e;
  e = error_of([] { render_src("{{ 1 < 2 < 3 }}"); });
  EXPECT_NE(e.find("chained comparison"), std::string::npos) << e;
  EXPECT_THROW(render_src("{{ 'unterminated }}"), Error);
  fs::path dir = test::scratch_dir("bad_template");
  std::ofstream(dir / "chat_template.jinja") << "{% for m in messages %}{{ m.role }}{% endfor\n";
  e = error_of([&] { ChatTemplate::from_model_dir(dir); });
  EXPECT_NE(e.find("chat_template.jinja"), std::string::npos) << e;
}

// A list-form chat_template whose "default" entry has a non-string template (or name) must be an hlwq::Error
// naming tokenizer_config.json, not a raw nlohmann type_error.
TEST(ChatTemplate, MalformedTemplateListNamesTheFile) {
  fs::path dir = test::scratch_dir("bad_template_list");
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": [{"name": "default", "template": 42}]})";
  std::string e = error_of([&] { ChatTemplate::from_model_dir(dir); });
  EXPECT_NE(e.find("tokenizer_config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("must have a string \"template\", got number"), std::string::npos) << e;
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": [{"name": 7, "template": "x"}]})";
  e = error_of([&] { ChatTemplate::from_model_dir(dir); });
  EXPECT_NE(e.find("without a \"default\" entry"), std::string::npos) << e;
  std::ofstream(dir / "tokenizer_config.json") << R"({"eos_token": [[[["x"]]]]})";
  e = error_of([&] { ChatTemplate::from_model_dir(dir); });
  EXPECT_NE(e.find("field eos_token must be a string, null or {\"content\": ...}, got array"), std::string::npos)
      << e;
}

}  // namespace
}  // namespace hlwq
