#include "server/tool_calls.h"

#include <algorithm>

namespace hlwq::server {

using json = nlohmann::ordered_json;

namespace {
constexpr std::string_view kOpen = "<tool_call>", kClose = "</tool_call>";

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool eat(std::string_view& s, std::string_view prefix) {
  if (s.substr(0, prefix.size()) != prefix) return false;
  s.remove_prefix(prefix.size());
  return true;
}

// "<TAG=NAME>" at the front of s: NAME (non-empty, no space or '<').
bool eat_named(std::string_view& s, std::string_view tag, std::string& name) {
  std::string_view t = s;
  if (!eat(t, "<") || !eat(t, tag) || !eat(t, "=")) return false;
  const size_t gt = t.find('>');
  if (gt == std::string_view::npos || gt == 0) return false;
  const std::string_view n = t.substr(0, gt);
  if (std::any_of(n.begin(), n.end(), [](char c) { return is_space(c) || c == '<'; })) return false;
  name = std::string(n);
  s = t.substr(gt + 1);
  return true;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Whether the schema of `param` says it is a string (then its XML value is never read as JSON).
bool is_string_param(const json& parameters, const std::string& param, bool& known) {
  known = false;
  if (!parameters.is_object()) return false;
  auto props = parameters.find("properties");
  if (props == parameters.end() || !props->is_object()) return false;
  auto p = props->find(param);
  if (p == props->end() || !p->is_object()) return false;
  known = true;
  auto type = p->find("type");
  if (type == p->end()) return false;
  if (type->is_string()) return *type == "string";
  if (type->is_array()) return std::find(type->begin(), type->end(), json("string")) != type->end() && type->size() == 1;
  return false;
}

}  // namespace

bool ToolCallParser::parse_hermes(std::string_view body, ToolCall& out) const {
  const json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) return false;
  json args = json::object();
  if (auto a = j.find("arguments"); a != j.end() && !a->is_null()) {
    args = *a;
    if (args.is_string()) args = json::parse(a->get<std::string>(), nullptr, false);  // arguments as JSON text
    if (args.is_discarded() || !args.is_object()) return false;
  }
  out = {name->get<std::string>(), dump(args)};
  return true;
}

bool ToolCallParser::parse_xml(std::string_view s, ToolCall& out) const {
  std::string name;
  if (!eat_named(s, "function", name)) return false;
  const ToolSpec* spec = nullptr;
  for (const ToolSpec& t : tools_)
    if (t.name == name) spec = &t;
  json args = json::object();
  for (;;) {
    s = trim(s);
    if (eat(s, "</function>")) break;
    std::string param;
    if (!eat_named(s, "parameter", param)) return false;
    const size_t end = s.find("</parameter>");
    if (end == std::string_view::npos || args.contains(param)) return false;
    std::string_view value = s.substr(0, end);
    s.remove_prefix(end + std::string_view("</parameter>").size());
    if (!value.empty() && value.front() == '\n') value.remove_prefix(1);
    if (!value.empty() && value.back() == '\n') value.remove_suffix(1);
    bool known = false;
    const bool text = spec == nullptr || is_string_param(spec->parameters, param, known) || !known;
    json v = text ? json() : json::parse(value, nullptr, false);
    args[param] = text || v.is_discarded() ? json(std::string(value)) : v;
  }
  if (!trim(s).empty()) return false;
  out = {std::move(name), dump(args)};
  return true;
}

bool ToolCallParser::parse_body(std::string_view body, ToolCall& out) const {
  body = trim(body);
  if (format_ != ToolCallFormat::qwen3_xml && body.substr(0, 1) == "{") return parse_hermes(body, out);
  if (format_ != ToolCallFormat::hermes && body.substr(0, 10) == "<function=") return parse_xml(body, out);
  return false;
}

ToolCallParser::Out ToolCallParser::push(std::string_view piece) {
  Out out;
  held_ += piece;
  std::string_view rest = held_;
  std::string keep;
  for (;;) {
    if (!in_block_) {
      const size_t at = rest.find(kOpen);
      if (at == std::string_view::npos) {
        const size_t n = partial_tag(rest, kOpen);
        out.text += rest.substr(0, rest.size() - n);
        keep = std::string(rest.substr(rest.size() - n));
        break;
      }
      out.text += rest.substr(0, at);
      rest.remove_prefix(at + kOpen.size());
      in_block_ = true;
    } else {
      const size_t at = rest.find(kClose);
      if (at == std::string_view::npos) {
        keep = std::string(rest);  // the body so far
        break;
      }
      ToolCall call;
      if (parse_body(rest.substr(0, at), call)) out.calls.push_back(std::move(call));
      else out.text += std::string(kOpen) + std::string(rest.substr(0, at + kClose.size()));  // malformed: text
      rest.remove_prefix(at + kClose.size());
      in_block_ = false;
    }
  }
  held_ = std::move(keep);
  return out;
}

ToolCallParser::Out ToolCallParser::flush() {
  Out out;
  out.text = in_block_ ? std::string(kOpen) + held_ : held_;
  held_.clear();
  in_block_ = false;
  return out;
}

}  // namespace hlwq::server
