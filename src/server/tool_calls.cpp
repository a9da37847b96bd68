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

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

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

void ToolCallParser::add_arguments(Out& out, std::string piece) const {
  if (piece.empty()) return;
  if (!out.calls.empty() && out.calls.back().index == n_calls_) out.calls.back().arguments += piece;
  else out.calls.push_back({n_calls_, "", std::move(piece)});
}

void ToolCallParser::advance(Out& out) {
  if (!stream_ && !whole_) {
    CallHeader h;
    ArgsStream::Form form = ArgsStream::Form::hermes;
    bool more = false;
    if (format_ != ToolCallFormat::qwen3_xml) {
      h = hermes_header(body_);
      more = h.need_more;
    }
    if (h.end == std::string_view::npos && format_ != ToolCallFormat::hermes) {
      CallHeader x = xml_header(body_);
      more = more || x.need_more;
      if (x.end != std::string_view::npos) {
        h = std::move(x);
        form = ArgsStream::Form::xml;
      }
    }
    if (h.end == std::string_view::npos) {
      whole_ = !more;
      return;
    }
    const nlohmann::ordered_json* params = nullptr;
    for (const ToolSpec& t : tools_)
      if (t.name == h.name) params = &t.parameters;
    stream_.emplace(form, params);
    out.calls.push_back({n_calls_, h.name, ""});
    fed_ = h.end;
  }
  if (stream_) {
    add_arguments(out, stream_->feed(std::string_view(body_).substr(fed_)));
    fed_ = body_.size();
  }
}

void ToolCallParser::close_block(Out& out) {
  if (stream_) {
    ArgsStream::End e = stream_->finish(body_);
    add_arguments(out, std::move(e.arguments));
    out.text += e.text;
    ++n_calls_;
  } else {
    ToolCall call;
    if (format_ != ToolCallFormat::qwen3_xml && parse_hermes(trim(body_), call))
      out.calls.push_back({n_calls_++, std::move(call.name), std::move(call.arguments)});
    else
      out.text += std::string(kOpen) + body_ + std::string(kClose);  // malformed: text
  }
  stream_.reset();
  body_.clear();
  whole_ = false;
  fed_ = 0;
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
        const size_t n = partial_tag(rest, kClose);
        body_ += rest.substr(0, rest.size() - n);
        keep = std::string(rest.substr(rest.size() - n));
        advance(out);
        break;
      }
      body_ += rest.substr(0, at);
      advance(out);
      close_block(out);
      rest.remove_prefix(at + kClose.size());
      in_block_ = false;
    }
  }
  held_ = std::move(keep);
  return out;
}

ToolCallParser::Out ToolCallParser::flush() {
  Out out;
  if (in_block_) {
    body_ += held_;  // a partial closing tag is body after all
    advance(out);
    if (stream_) close_block(out);  // a streamed call ends with the output
    else out.text = std::string(kOpen) + body_;
  } else {
    out.text = held_;
  }
  held_.clear();
  body_.clear();
  stream_.reset();
  whole_ = false;
  fed_ = 0;
  in_block_ = false;
  return out;
}

}  // namespace hlwq::server
