// ArgsStream and the call headers (see tool_args_stream.h).
#include "server/tool_args_stream.h"

#include <algorithm>

namespace hlwq::server {

using json = nlohmann::ordered_json;

namespace {
constexpr std::string_view kParamOpen = "<parameter=", kParamClose = "</parameter>", kFunctionClose = "</function>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; }

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// s JSON-escaped, without the quotes.
std::string escape(std::string_view s) {
  const std::string q = dump(json(std::string(s)));
  return q.substr(1, q.size() - 2);
}

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

// The longest prefix of s[0, n) that does not end inside a UTF-8 character (escaping works per character).
size_t utf8_whole(std::string_view s, size_t n) {
  for (size_t back = 1; back <= std::min<size_t>(n, 4); ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return len > back ? n - back : n;
  }
  return n;
}

bool has_bad_name_char(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return is_space(c) || c == '<'; });
}

// A cursor over a body that may still grow: each match says ok, need_more (the body ends first) or fail.
struct Cursor {
  std::string_view b;
  size_t i = 0;
  enum R { ok, more, fail };
  void ws() {
    while (i < b.size() && is_space(b[i])) ++i;
  }
  R lit(std::string_view s) {
    for (size_t k = 0; k < s.size(); ++k) {
      if (i + k >= b.size()) return more;
      if (b[i + k] != s[k]) return fail;
    }
    i += s.size();
    return ok;
  }
  R string(std::string& out) {  // a JSON string literal, decoded
    if (i >= b.size()) return more;
    if (b[i] != '"') return fail;
    size_t j = i + 1;
    while (j < b.size() && b[j] != '"') j += b[j] == '\\' ? 2 : 1;
    if (j >= b.size()) return more;
    const json s = json::parse(b.substr(i, j + 1 - i), nullptr, false);
    if (s.is_discarded() || !s.is_string()) return fail;
    out = s.get<std::string>();
    i = j + 1;
    return ok;
  }
};

CallHeader outcome(Cursor::R r) {
  CallHeader h;
  h.need_more = r == Cursor::more;
  return h;
}

}  // namespace

CallHeader hermes_header(std::string_view body) {
  Cursor c{body};
  std::string name;
  c.ws();
  if (auto r = c.lit("{"); r != Cursor::ok) return outcome(r);
  c.ws();
  if (auto r = c.lit("\"name\""); r != Cursor::ok) return outcome(r);
  c.ws();
  if (auto r = c.lit(":"); r != Cursor::ok) return outcome(r);
  c.ws();
  if (auto r = c.string(name); r != Cursor::ok) return outcome(r);
  if (name.empty()) return outcome(Cursor::fail);
  c.ws();
  if (auto r = c.lit(","); r != Cursor::ok) return outcome(r);
  c.ws();
  if (auto r = c.lit("\"arguments\""); r != Cursor::ok) return outcome(r);
  c.ws();
  if (auto r = c.lit(":"); r != Cursor::ok) return outcome(r);
  c.ws();
  if (c.i >= body.size()) return outcome(Cursor::more);
  if (body[c.i] != '{') return outcome(Cursor::fail);  // arguments as JSON text, or not an object: read whole
  return {c.i, std::move(name), false};
}

CallHeader xml_header(std::string_view body) {
  Cursor c{body};
  c.ws();
  if (auto r = c.lit("<function="); r != Cursor::ok) return outcome(r);
  const size_t gt = body.find('>', c.i);
  const std::string_view name = body.substr(c.i, gt == std::string_view::npos ? std::string_view::npos : gt - c.i);
  if (has_bad_name_char(name)) return outcome(Cursor::fail);
  if (gt == std::string_view::npos) return outcome(Cursor::more);
  if (name.empty()) return outcome(Cursor::fail);
  return {gt + 1, std::string(name), false};
}

bool ArgsStream::is_string_param(const std::string& param) const {
  // an unknown tool's parameters, and those its schema does not type, are text
  if (!params_ || !params_->is_object()) return true;
  auto props = params_->find("properties");
  if (props == params_->end() || !props->is_object()) return true;
  auto p = props->find(param);
  if (p == props->end() || !p->is_object()) return true;
  auto type = p->find("type");
  if (type == p->end()) return false;
  if (type->is_string()) return *type == "string";
  if (type->is_array()) return type->size() == 1 && (*type)[0] == "string";
  return false;
}

std::string ArgsStream::feed(std::string_view piece) {
  pend_ += piece;
  return form_ == Form::hermes ? step_hermes() : step_xml();
}

std::string ArgsStream::step_hermes() {
  std::string out;
  size_t i = 0;
  for (; i < pend_.size() && state_ == State::args; ++i) {
    const char c = pend_[i];
    if (in_str_) {
      out += c;
      if (esc_) esc_ = false;
      else if (c == '\\') esc_ = true;
      else if (c == '"') in_str_ = false;
      continue;
    }
    if (is_space(c)) continue;
    out += c;
    if (c == '"') {
      in_str_ = true;
    } else if (c == '{' || c == '[') {
      stack_.push_back(c);
    } else if (c == '}' || c == ']') {
      if (!stack_.empty()) stack_.pop_back();
      if (stack_.empty()) state_ = State::after;
    }
  }
  pend_.erase(0, i);  // after the arguments: the rest of the object, checked at the end
  return out;
}

std::string ArgsStream::close_args() {
  if (form_ == Form::hermes) {
    std::string out = in_str_ ? "\"" : "";
    for (auto it = stack_.rbegin(); it != stack_.rend(); ++it) out += *it == '{' ? '}' : ']';
    stack_.clear();
    in_str_ = false;
    return out;
  }
  return seen_.empty() ? "{}" : "}";
}

std::string ArgsStream::step_xml() {
  std::string out;
  for (;;) {
    switch (state_) {
      case State::args:  // the XML form starts between parameters
      case State::between: {
        state_ = State::between;
        size_t k = 0;
        while (k < pend_.size() && is_space(pend_[k])) ++k;
        pend_.erase(0, k);
        if (pend_.empty()) return out;
        if (pend_.starts_with(kFunctionClose)) {
          out += close_args();
          pend_.erase(0, kFunctionClose.size());
          state_ = State::after;
          continue;
        }
        if (pend_.starts_with(kParamOpen)) {
          const size_t gt = pend_.find('>', kParamOpen.size());
          const std::string_view rest = std::string_view(pend_).substr(kParamOpen.size());
          const std::string name(rest.substr(0, gt == std::string::npos ? rest.size() : gt - kParamOpen.size()));
          if (!has_bad_name_char(name) && gt == std::string::npos) return out;  // the name goes on
          if (has_bad_name_char(name) || name.empty() || std::find(seen_.begin(), seen_.end(), name) != seen_.end()) {
            out += close_args();
            state_ = State::broken;
            continue;
          }
          out += (seen_.empty() ? "{" : ",") + dump(json(name)) + ":";
          seen_.push_back(name);
          pend_.erase(0, gt + 1);
          value_started_ = false;
          value_.clear();
          state_ = is_string_param(name) ? State::value_text : State::value_typed;
          if (state_ == State::value_text) out += '"';
          continue;
        }
        if (kFunctionClose.starts_with(pend_) || kParamOpen.starts_with(pend_)) return out;
        out += close_args();
        state_ = State::broken;
        continue;
      }
      case State::value_text: {
        if (!value_started_ && !pend_.empty()) {
          if (pend_[0] == '\n') pend_.erase(0, 1);  // the one leading newline of a value
          value_started_ = true;
        }
        const size_t at = pend_.find(kParamClose);
        if (at != std::string::npos) {
          std::string_view v = std::string_view(pend_).substr(0, at);
          if (!v.empty() && v.back() == '\n') v.remove_suffix(1);  // and its one trailing newline
          out += escape(v) + '"';
          pend_.erase(0, at + kParamClose.size());
          state_ = State::between;
          continue;
        }
        // release what cannot be the closing tag, holding a newline that may turn out to be the trailing one
        size_t n = pend_.size() - partial_tag(pend_, kParamClose);
        if (n > 0 && pend_[n - 1] == '\n') --n;
        n = utf8_whole(pend_, n);
        out += escape(std::string_view(pend_).substr(0, n));
        pend_.erase(0, n);
        return out;
      }
      case State::value_typed: {
        const size_t at = pend_.find(kParamClose);
        if (at == std::string::npos) return out;
        std::string_view v = std::string_view(pend_).substr(0, at);
        if (!v.empty() && v.front() == '\n') v.remove_prefix(1);
        if (!v.empty() && v.back() == '\n') v.remove_suffix(1);
        const json parsed = json::parse(v, nullptr, false);
        out += dump(parsed.is_discarded() ? json(std::string(v)) : parsed);
        pend_.erase(0, at + kParamClose.size());
        state_ = State::between;
        continue;
      }
      case State::after: {
        size_t k = 0;
        while (k < pend_.size() && is_space(pend_[k])) ++k;
        pend_.erase(0, k);
        if (!pend_.empty()) state_ = State::broken;  // text after </function>: returned as text at the end
        return out;
      }
      case State::broken:
        return out;
    }
  }
}

ArgsStream::End ArgsStream::finish(std::string_view body) {
  End e;
  if (form_ == Form::hermes) {
    if (state_ == State::args) {
      e.arguments = close_args();  // the block closed inside the arguments
    } else {
      const json j = json::parse(body, nullptr, false);
      if (j.is_discarded() || !j.is_object()) e.text = pend_;  // what followed the arguments was not the object's end
    }
  } else {
    switch (state_) {
      case State::value_text:  // an unclosed value runs to the end of the block
        e.arguments = escape(pend_) + "\"" + close_args();
        break;
      case State::value_typed:
        e.arguments = dump(json(pend_)) + close_args();
        break;
      case State::args:
      case State::between:
        e.arguments = close_args();
        e.text = pend_;
        break;
      case State::after:
      case State::broken:
        e.text = pend_;
        break;
    }
  }
  pend_.clear();
  return e;
}

}  // namespace hlwq::server
