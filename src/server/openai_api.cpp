#include "server/openai_api.h"

#include <cmath>
#include <random>

#include <fmt/format.h>

#include "core/error.h"
#include "io/json_util.h"
#include "io/read_file.h"
#include "runtime/chat_encode.h"
#include "runtime/utf8_stream.h"

namespace hlwq::server {

using json = nlohmann::ordered_json;

namespace {

[[noreturn]] void bad(std::string param, std::string message, int status = 400, std::string code = "") {
  throw ApiError{status, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
}

// Dump that never throws on invalid UTF-8 (token bytes may split a character).
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

double number(const json& body, const char* key, double lo, double hi, double dflt) {
  const json* v = field(body, key);
  if (!v) return dflt;
  if (!v->is_number()) bad(key, fmt::format("'{}' must be a number, got {}", key, v->type_name()));
  const double d = v->get<double>();
  if (!(d >= lo && d <= hi)) bad(key, fmt::format("'{}' must be from {:g} to {:g}, got {:g}", key, lo, hi, d));
  return d;
}

std::optional<int64_t> integer(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(body, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) bad(key, fmt::format("'{}' must be an integer, got {}", key, v->type_name()));
  const int64_t i = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX : v->get<int64_t>();
  if (i < lo || i > hi) bad(key, fmt::format("'{}' must be from {} to {}, got {}", key, lo, hi, i));
  return i;
}

bool boolean(const json& body, const char* key) {
  const json* v = field(body, key);
  if (!v) return false;
  if (!v->is_boolean()) bad(key, fmt::format("'{}' must be true or false, got {}", key, v->type_name()));
  return v->get<bool>();
}

// Message content: a string, or an array of {"type": "text", "text": ...} parts (concatenated).
std::string content_text(const json& c, const std::string& param) {
  if (c.is_null()) return "";
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) bad(param, fmt::format("'{}' must be a string or an array of text parts", param));
  std::string s;
  for (const json& part : c) {
    if (!part.is_object() || part.value("type", json()) != "text" || !part.contains("text") || !part["text"].is_string())
      bad(param, fmt::format("'{}': only text parts ({{\"type\": \"text\", \"text\": ...}}) are supported", param));
    s += part["text"].get<std::string>();
  }
  return s;
}

// OpenAI chat messages as the template sees them: content as one string, and per role the fields templates use
// (assistant tool_calls with their arguments as an object, as vLLM passes them; tool_call_id; reasoning_content).
json chat_messages(const json& msgs) {
  json conv = json::array();
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    const std::string p = fmt::format("messages[{}]", i);
    if (!m.is_object()) bad(p, fmt::format("'{}' must be an object", p));
    const json* role = field(m, "role");
    if (!role || !role->is_string()) bad(p + ".role", fmt::format("'{}.role' must be a string", p));
    std::string rs = role->get<std::string>();
    if (rs == "developer") rs = "system";
    if (rs != "system" && rs != "user" && rs != "assistant" && rs != "tool")
      bad(p + ".role", fmt::format("'{}.role' must be system, developer, user, assistant or tool, got '{}'", p, rs));
    json out = {{"role", rs}, {"content", content_text(m.contains("content") ? m["content"] : json(), p + ".content")}};
    auto string_field = [&](const json& obj, const char* key, const std::string& where) -> const json* {
      const json* v = field(obj, key);
      if (v && !v->is_string()) bad(where + "." + key, fmt::format("'{}.{}' must be a string", where, key));
      return v;
    };
    if (const json* name = string_field(m, "name", p)) out["name"] = *name;
    if (rs == "tool")
      if (const json* id = string_field(m, "tool_call_id", p)) out["tool_call_id"] = *id;
    if (rs == "assistant") {
      if (const json* rc = string_field(m, "reasoning_content", p)) out["reasoning_content"] = *rc;
      if (const json* calls = field(m, "tool_calls")) {
        if (!calls->is_array()) bad(p + ".tool_calls", fmt::format("'{}.tool_calls' must be an array", p));
        json tc = json::array();
        for (size_t k = 0; k < calls->size(); ++k) {
          const json& c = (*calls)[k];
          const std::string q = fmt::format("{}.tool_calls[{}]", p, k);
          const json* fn = c.is_object() ? field(c, "function") : nullptr;
          if (!fn || !fn->is_object()) bad(q + ".function", fmt::format("'{}.function' must be an object", q));
          const json* name = string_field(*fn, "name", q + ".function");
          if (!name) bad(q + ".function.name", fmt::format("'{}.function.name' is required", q));
          const json* args = field(*fn, "arguments");
          json a = json::object();
          if (args && args->is_string()) {
            a = json::parse(args->get<std::string>(), nullptr, false);
            if (a.is_discarded() || !a.is_object()) a = *args;  // not a JSON object: the template gets the text
          } else if (args && args->is_object()) {
            a = *args;
          } else if (args) {
            bad(q + ".function.arguments", fmt::format("'{}.function.arguments' must be a string", q));
          }
          json call = {{"type", "function"}, {"function", {{"name", *name}, {"arguments", a}}}};
          if (const json* id = string_field(c, "id", q)) call["id"] = *id;
          tc.push_back(std::move(call));
        }
        out["tool_calls"] = std::move(tc);
      }
    }
    conv.push_back(std::move(out));
  }
  return conv;
}

// The request's tools: [{"type": "function", "function": {"name", "description"?, "parameters"?}}].
std::vector<ToolSpec> tool_specs(const json& tools) {
  if (!tools.is_array()) bad("tools", "'tools' must be an array");
  std::vector<ToolSpec> out;
  for (size_t i = 0; i < tools.size(); ++i) {
    const json& t = tools[i];
    const std::string p = fmt::format("tools[{}]", i);
    if (!t.is_object() || t.value("type", json()) != "function")
      bad(p, fmt::format("'{}' must be an object with \"type\": \"function\"", p));
    const json* fn = field(t, "function");
    if (!fn || !fn->is_object()) bad(p + ".function", fmt::format("'{}.function' must be an object", p));
    const json* name = field(*fn, "name");
    if (!name || !name->is_string() || name->get<std::string>().empty())
      bad(p + ".function.name", fmt::format("'{}.function.name' must be a non-empty string", p));
    ToolSpec spec{name->get<std::string>()};
    if (const json* params = field(*fn, "parameters")) {
      if (!params->is_object())
        bad(p + ".function.parameters", fmt::format("'{}.function.parameters' must be an object", p));
      spec.parameters = *params;
    }
    out.push_back(std::move(spec));
  }
  return out;
}

// Extra chat-template variables: chat_template_kwargs (vLLM), and a top-level enable_thinking as some clients send
// it (chat_template_kwargs wins). The variables the server sets itself cannot be replaced.
json template_vars(const json& body) {
  json vars = json::object();
  if (const json* et = field(body, "enable_thinking")) {
    if (!et->is_boolean()) bad("enable_thinking", "'enable_thinking' must be true or false");
    vars["enable_thinking"] = *et;
  }
  if (const json* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) bad("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (auto it = kw->begin(); it != kw->end(); ++it) {
      for (const char* reserved : {"messages", "add_generation_prompt", "bos_token", "eos_token", "tools"})
        if (it.key() == reserved)
          bad("chat_template_kwargs",
              fmt::format("'chat_template_kwargs' may not set '{}' (the server sets it)", it.key()));
      vars[it.key()] = it.value();
    }
  }
  return vars;
}

std::string random_id(const char* prefix) {
  std::random_device rd;
  return fmt::format("{}{:08x}{:08x}", prefix, rd(), rd());
}

}  // namespace

std::string error_body(const ApiError& e) {
  json err = {{"message", e.message}, {"type", e.type}, {"param", e.param.empty() ? json() : json(e.param)},
              {"code", e.code.empty() ? json() : json(e.code)}};
  return dump(json{{"error", err}});
}

ApiRequest parse_request(Endpoint ep, std::string_view text, const ApiContext& ctx) {
  // nlohmann's parser is iterative, but copying a value recurses once per level: a body nested ~30,000 deep
  // (60 KB of brackets in a message's content) overflowed the stack and killed the server. No request nests
  // legitimately beyond ~10 levels; the cap is the one every JSON file hlwq reads has.
  try {
    json_check_depth(text.data(), text.data() + text.size(), kMaxJsonNesting, "the request body");
  } catch (const Error& e) {
    bad("", e.what());
  }
  json body = json::parse(text, nullptr, false);
  if (body.is_discarded()) bad("", "the request body is not valid JSON");
  if (!body.is_object()) bad("", fmt::format("the request body must be a JSON object, got {}", body.type_name()));
  ApiRequest r;
  r.endpoint = ep;
  if (const json* m = field(body, "model")) {
    if (!m->is_string()) bad("model", "'model' must be a string");
    if (m->get<std::string>() != ctx.model_name)
      bad("model", fmt::format("The model '{}' does not exist; this server serves '{}'", m->get<std::string>(),
                               ctx.model_name),
          404, "model_not_found");
  }
  if (auto n = integer(body, "n", 1, 1); n && *n != 1) bad("n", "only n = 1 is supported");
  r.stream = boolean(body, "stream");
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = boolean(*so, "include_usage");
  }

  // The prompt.
  GenRequest& g = r.gen;
  if (ep == Endpoint::chat) {
    const json* msgs = field(body, "messages");
    if (!msgs) bad("messages", "'messages' is required");
    if (!msgs->is_array()) bad("messages", "'messages' must be an array");
    if (msgs->empty()) bad("messages", "'messages' must not be empty");
    const json conv = chat_messages(*msgs);
    json vars = template_vars(body);
    if (const json* tools = field(body, "tools")) {
      r.tools = tool_specs(*tools);
      vars["tools"] = *tools;
    }
    std::string choice = "none";
    if (!r.tools.empty()) choice = "auto";
    if (const json* tc = field(body, "tool_choice")) {
      if (!tc->is_string() || (*tc != "none" && *tc != "auto"))
        bad("tool_choice", "'tool_choice' must be \"none\" or \"auto\" (hlwq does not force calls)");
      choice = tc->get<std::string>();
      if (choice == "auto" && r.tools.empty()) bad("tool_choice", "'tool_choice' \"auto\" needs 'tools'");
    }
    if (choice == "auto") r.tool_format = ctx.tool_parser;
    try {
      g.prompt = encode_chat_json(*ctx.tok, *ctx.chat, conv, true, vars);
    } catch (const Error& e) {
      bad("messages", fmt::format("the chat template could not render these messages: {}", e.what()));
    }
    if (ctx.reasoning_parser) {
      // The template may open the think block in the generation prompt (then the model starts reasoning).
      const size_t k = std::min<size_t>(g.prompt.size(), 4);
      const std::string tail = ctx.tok->decode({g.prompt.end() - ptrdiff_t(k), g.prompt.end()});
      const size_t open = tail.rfind("<think>");
      r.reasoning_starts_open = open != std::string::npos && tail.find("</think>", open) == std::string::npos;
    }
  } else {
    const json* p = field(body, "prompt");
    if (!p) bad("prompt", "'prompt' is required");
    std::string s;
    if (p->is_string()) s = p->get<std::string>();
    else if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) s = (*p)[0].get<std::string>();
    else bad("prompt", "'prompt' must be a string (or an array of one string)");
    // Text a client sends is never control tokens.
    g.prompt = ctx.tok->encode(s, false);
  }
  if (g.prompt.empty()) bad(ep == Endpoint::chat ? "messages" : "prompt", "the prompt encodes to no tokens");
  const int64_t n_prompt = int64_t(g.prompt.size());
  if (n_prompt >= ctx.max_model_len)
    bad(ep == Endpoint::chat ? "messages" : "prompt",
        fmt::format("This model's maximum context length is {} tokens, but the prompt has {} tokens",
                    ctx.max_model_len, n_prompt),
        400, "context_length_exceeded");

  // Length and sampling.
  auto mt = integer(body, "max_completion_tokens", 1, INT64_MAX);
  const char* mt_name = "max_completion_tokens";
  if (!mt) {
    mt = integer(body, "max_tokens", 1, INT64_MAX);
    mt_name = "max_tokens";
  }
  g.max_tokens = mt ? *mt : ctx.max_model_len - n_prompt;
  if (g.max_tokens > ctx.max_model_len - n_prompt)
    bad(mt_name,
        fmt::format("This model's maximum context length is {} tokens; the prompt has {} and {} = {} asks for {} "
                    "more",
                    ctx.max_model_len, n_prompt, mt_name, g.max_tokens, g.max_tokens),
        400, "context_length_exceeded");
  SamplerConfig& s = g.sampler;
  s = ctx.defaults;
  s.temperature = float(number(body, "temperature", 0, 2, s.temperature));
  s.top_p = float(number(body, "top_p", 0, 1, s.top_p));
  if (s.top_p <= 0) bad("top_p", "'top_p' must be greater than 0");
  if (auto k = integer(body, "top_k", -1, 1 << 30)) s.top_k = *k <= 0 ? 0 : int32_t(*k);
  s.min_p = float(number(body, "min_p", 0, 1, s.min_p));
  s.presence_penalty = float(number(body, "presence_penalty", -2, 2, s.presence_penalty));
  s.repetition_penalty = float(number(body, "repetition_penalty", 1e-6, 100, s.repetition_penalty));
  if (auto seed = integer(body, "seed", INT64_MIN, INT64_MAX)) s.seed = uint64_t(*seed);
  else s.seed = (uint64_t(std::random_device{}()) << 32) | std::random_device{}();
  if (const json* st = field(body, "stop")) {
    if (st->is_string()) g.stop.push_back(st->get<std::string>());
    else if (st->is_array()) {
      for (const json& x : *st) {
        if (!x.is_string()) bad("stop", "'stop' must be a string or an array of strings");
        g.stop.push_back(x.get<std::string>());
      }
    } else bad("stop", "'stop' must be a string or an array of strings");
    for (const auto& x : g.stop)
      if (x.empty()) bad("stop", "'stop' strings must not be empty");
  }
  if (ep == Endpoint::chat) {
    if (boolean(body, "logprobs")) g.top_logprobs = int32_t(integer(body, "top_logprobs", 0, 20).value_or(0));
    else if (field(body, "top_logprobs")) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  } else if (auto lp = integer(body, "logprobs", 0, 20)) {
    g.top_logprobs = int32_t(*lp);
  }
  return r;
}

std::string models_body(const ApiContext& ctx, int64_t created) {
  json m = {{"id", ctx.model_name}, {"object", "model"}, {"created", created}, {"owned_by", "hlwq"},
            {"max_model_len", ctx.max_model_len}};
  return dump(json{{"object", "list"}, {"data", json::array({m})}});
}

ResponseWriter::ResponseWriter(const ApiRequest& req, std::string model, int64_t created)
    : ep_(req.endpoint),
      include_usage_(req.include_usage),
      want_logprobs_(req.gen.top_logprobs >= 0),
      id_(random_id(req.endpoint == Endpoint::chat ? "chatcmpl-" : "cmpl-")),
      model_(std::move(model)),
      created_(created) {
  if (req.reasoning_starts_open) reasoning_.emplace(*req.reasoning_starts_open);
  if (req.tool_format) tool_parser_.emplace(*req.tool_format, req.tools);
}

ResponseWriter::Parsed ResponseWriter::parse(std::string_view text) {
  Parsed p;
  std::string rest(text);
  if (tool_parser_) {
    ToolCallParser::Out t = tool_parser_->push(text);
    rest = std::move(t.text);
    p.calls = std::move(t.calls);
  }
  if (reasoning_) {
    ReasoningSplitter::Out o = reasoning_->push(rest);
    p.reasoning = std::move(o.reasoning);
    p.content = std::move(o.content);
  } else {
    p.content = std::move(rest);
  }
  return p;
}

ResponseWriter::Parsed ResponseWriter::parse_flush() {
  Parsed p;
  // An unclosed tool-call block is text: it goes through the reasoning split like any other.
  const std::string rest = tool_parser_ ? tool_parser_->flush().text : std::string();
  if (reasoning_) {
    const ReasoningSplitter::Out o = reasoning_->push(rest), f = reasoning_->flush();
    p.reasoning = o.reasoning + f.reasoning;
    p.content = o.content + f.content;
  } else {
    p.content = rest;
  }
  return p;
}

std::string ResponseWriter::finish_reason(const StreamEvent& f) const {
  // A turn that ended by itself after calling tools asks the client to run them.
  if (!calls_.empty() && (f.finish == FinishReason::eos || f.finish == FinishReason::stop_string)) return "tool_calls";
  return std::string(finish_reason_name(f.finish));
}

json ResponseWriter::chunk_base() const {
  json j = {{"id", id_}, {"object", ep_ == Endpoint::chat ? "chat.completion.chunk" : "text_completion"},
            {"created", created_}, {"model", model_}};
  if (include_usage_) j["usage"] = nullptr;
  return j;
}

json ResponseWriter::logprobs_json(const std::vector<TokenLogprob>& lp) const {
  if (!want_logprobs_) return nullptr;
  auto bytes = [](const std::string& s) {
    json b = json::array();
    for (unsigned char c : s) b.push_back(int(c));
    return b;
  };
  if (ep_ == Endpoint::chat) {
    json content = json::array();
    for (const auto& t : lp) {
      json top = json::array();
      for (const auto& [tok, l] : t.top)
        top.push_back({{"token", utf8_lossy(tok)}, {"logprob", l}, {"bytes", bytes(tok)}});
      content.push_back(
          {{"token", utf8_lossy(t.token)}, {"logprob", t.logprob}, {"bytes", bytes(t.token)}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array();
  for (const auto& t : lp) {
    tokens.push_back(utf8_lossy(t.token));
    lps.push_back(t.logprob);
    json top = json::object();
    for (const auto& [tok, l] : t.top) top[utf8_lossy(tok)] = l;
    tops.push_back(top);
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
}

namespace {
std::string sse(const json& j) { return "data: " + dump(j) + "\n\n"; }
json usage_json(const StreamEvent& f) {
  return {{"prompt_tokens", f.prompt_tokens}, {"completion_tokens", f.completion_tokens},
          {"total_tokens", f.prompt_tokens + f.completion_tokens}};
}
}  // namespace

std::string ResponseWriter::sse_start() const {
  if (ep_ != Endpoint::chat) return "";
  json j = chunk_base();
  j["choices"] = json::array(
      {{{"index", 0}, {"delta", {{"role", "assistant"}, {"content", ""}}}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
  return sse(j);
}

json ResponseWriter::chat_delta_chunk(const Parsed& p, const std::vector<TokenLogprob>& lp) {
  json delta = json::object();
  if (!p.reasoning.empty()) delta["reasoning_content"] = p.reasoning;
  if (!p.content.empty() || (p.reasoning.empty() && p.calls.empty())) delta["content"] = p.content;
  if (!p.calls.empty()) {
    // A call's first delta has its index, id, type and name; later ones the same index and more of the arguments
    // (clients concatenate "arguments" of the deltas with the same index).
    json calls = json::array();
    for (const ToolCallDelta& c : p.calls) {
      if (!c.name.empty())
        calls.push_back({{"index", c.index}, {"id", random_id("call_")}, {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
      else
        calls.push_back({{"index", c.index}, {"function", {{"arguments", c.arguments}}}});
      apply(c);
    }
    delta["tool_calls"] = std::move(calls);
  }
  json j = chunk_base();
  j["choices"] = json::array({{{"index", 0}, {"delta", delta}, {"logprobs", logprobs_json(lp)}, {"finish_reason", nullptr}}});
  return j;
}

void ResponseWriter::apply(const ToolCallDelta& d) {
  if (!d.name.empty()) calls_.push_back({d.name, ""});
  if (d.index < calls_.size()) calls_[d.index].arguments += d.arguments;  // the parser numbers calls from 0
}

std::string ResponseWriter::sse_delta(const StreamEvent& ev) {
  if (ep_ == Endpoint::chat) {
    const Parsed p = parse(ev.text);
    if (p.reasoning.empty() && p.content.empty() && p.calls.empty() && ev.logprobs.empty()) return "";
    return sse(chat_delta_chunk(p, ev.logprobs));
  }
  json j = chunk_base();
  j["choices"] = json::array({{{"index", 0}, {"text", ev.text}, {"logprobs", logprobs_json(ev.logprobs)},
                               {"finish_reason", nullptr}}});
  return sse(j);
}

std::string ResponseWriter::sse_finish(const StreamEvent& f) {
  std::string out;
  if (ep_ == Endpoint::chat) {  // text held back by the parsers is released now
    const Parsed p = parse_flush();
    if (!p.reasoning.empty() || !p.content.empty() || !p.calls.empty()) out += sse(chat_delta_chunk(p, {}));
  }
  json j = chunk_base();
  json choice = {{"index", 0}, {"logprobs", nullptr}, {"finish_reason", finish_reason(f)}};
  if (ep_ == Endpoint::chat) choice["delta"] = json::object();
  else choice["text"] = "";
  j["choices"] = json::array({choice});
  out += sse(j);
  if (include_usage_) {
    json u = chunk_base();
    u["choices"] = json::array();
    u["usage"] = usage_json(f);
    out += sse(u);
  }
  return out + "data: [DONE]\n\n";
}

void ResponseWriter::add(const StreamEvent& ev) {
  if (ep_ == Endpoint::chat) {
    Parsed p = parse(ev.text);
    reasoning_text_ += p.reasoning;
    text_ += p.content;
    for (const ToolCallDelta& c : p.calls) apply(c);
  } else {
    text_ += ev.text;
  }
  logprobs_.insert(logprobs_.end(), ev.logprobs.begin(), ev.logprobs.end());
}

std::string ResponseWriter::full(const StreamEvent& f) {
  if (ep_ == Endpoint::chat) {
    Parsed p = parse_flush();
    reasoning_text_ += p.reasoning;
    text_ += p.content;
    for (const ToolCallDelta& c : p.calls) apply(c);
  }
  json choice = {{"index", 0}, {"logprobs", logprobs_json(logprobs_)}, {"finish_reason", finish_reason(f)}};
  if (ep_ == Endpoint::chat) {
    json msg = {{"role", "assistant"}, {"content", text_.empty() && !calls_.empty() ? json() : json(text_)}};
    if (reasoning_) msg["reasoning_content"] = reasoning_text_.empty() ? json() : json(reasoning_text_);
    if (!calls_.empty()) {
      json calls = json::array();
      for (const ToolCall& c : calls_)
        calls.push_back({{"id", random_id("call_")}, {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
      msg["tool_calls"] = std::move(calls);
    }
    choice["message"] = std::move(msg);
  } else {
    choice["text"] = text_;
  }
  json j = {{"id", id_}, {"object", ep_ == Endpoint::chat ? "chat.completion" : "text_completion"},
            {"created", created_}, {"model", model_}, {"choices", json::array({choice})}, {"usage", usage_json(f)}};
  return dump(j);
}

}  // namespace hlwq::server
