// Helpers for quoting untrusted JSON in error messages and for refusing pathologically nested documents.
// json::dump() recurses once per nesting level, so dumping an attacker's 1M-deep [[[[...]]]] in an error
// message would overflow the stack; json_brief() bounds both depth and length. nlohmann's parser and (since
// 3.10) its destructor are iterative, but copies and dumps are not, so loaders of files from the internet also
// cap nesting with json_check_depth() before parsing: no file hlwq reads legitimately nests deeply.
#pragma once
#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace hlwq {

namespace detail {
inline void json_brief_into(const nlohmann::json& v, std::string& out, int depth, size_t limit) {
  using json = nlohmann::json;
  if (out.size() >= limit) return;
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    const size_t keep = std::min<size_t>(s.size(), 64);
    // replace: a prefix cut inside a UTF-8 sequence must not make dump() throw.
    out += json(s.substr(0, keep)).dump(-1, ' ', false, json::error_handler_t::replace);
    if (keep < s.size()) out += "...";
  } else if (v.is_array() || v.is_object()) {
    const bool arr = v.is_array();
    if (depth == 0 && !v.empty()) {
      out += arr ? "[...]" : "{...}";
      return;
    }
    out += arr ? '[' : '{';
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (!first) out += ", ";
      first = false;
      if (out.size() >= limit) {
        out += "...";
        break;
      }
      if (!arr) {
        out += json(it.key().substr(0, 64)).dump(-1, ' ', false, json::error_handler_t::replace);
        out += ": ";
      }
      json_brief_into(it.value(), out, depth - 1, limit);
    }
    out += arr ? ']' : '}';
  } else {
    out += v.dump();  // scalar: no recursion, bounded length
  }
}
}  // namespace detail

// A short, non-recursing-without-bound rendering of v for error messages: at most 3 levels, ~160 chars,
// strings cut to 64 bytes. E.g. "[1, 2]", "{\"a\": [...]}", "\"abc...\"".
inline std::string json_brief(const nlohmann::json& v) {
  std::string out;
  detail::json_brief_into(v, out, 3, 160);
  return out;
}

// Throws when [b, e) nests arrays/objects deeper than max_depth (brackets inside strings do not count). A
// cheap byte scan run before json::parse, so a hostile file is refused before any recursive json operation.
inline void json_check_depth(const char* b, const char* e, size_t max_depth, const std::string& what) {
  size_t depth = 0;
  bool in_str = false;
  for (const char* p = b; p < e; ++p) {
    const char c = *p;
    if (in_str) {
      if (c == '\\') ++p;  // skip the escaped character (a quote or backslash must not end the string)
      else if (c == '"') in_str = false;
    } else if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      HLWQ_CHECK(++depth <= max_depth, "{}: JSON nests deeper than {} levels at byte {}; refusing it", what,
                 max_depth, size_t(p - b));
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;  // unbalanced closers are the parser's to report
    }
  }
}

}  // namespace hlwq
