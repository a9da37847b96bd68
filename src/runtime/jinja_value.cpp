// Value construction, Python-compatible stringification and json.dumps-compatible serialisation.
#include "runtime/jinja_value.h"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "runtime/utf8_stream.h"

namespace hlwq::jinja {

Value Value::none() {
  Value v;
  v.kind_ = Kind::None;
  return v;
}
Value Value::boolean(bool b) {
  Value v;
  v.kind_ = Kind::Bool;
  v.b_ = b;
  return v;
}
Value Value::integer(int64_t i) {
  Value v;
  v.kind_ = Kind::Int;
  v.i_ = i;
  return v;
}
Value Value::number(double f) {
  Value v;
  v.kind_ = Kind::Float;
  v.f_ = f;
  return v;
}
Value Value::string(std::string s) {
  HLWQ_CHECK(s.size() <= kMaxStringBytes, "jinja: a string of {} bytes is over the {} byte limit", s.size(),
             kMaxStringBytes);
  Value v;
  v.kind_ = Kind::String;
  v.s_ = std::make_shared<const std::string>(std::move(s));
  return v;
}

namespace {
// 1 + the deepest child, refused past kMaxValueDepth.
template <class It, class Get>
uint8_t container_depth(It b, It e, Get get) {
  int d = 0;
  for (It it = b; it != e; ++it) d = std::max(d, get(*it).depth());
  HLWQ_CHECK(d + 1 <= kMaxValueDepth, "jinja: values nest deeper than {} lists/dicts", kMaxValueDepth);
  return uint8_t(d + 1);
}
}  // namespace

Value Value::list(ValueList items) {
  HLWQ_CHECK(items.size() <= kMaxItems, "jinja: a list of {} items is over the {} item limit", items.size(),
             kMaxItems);
  Value v;
  v.kind_ = Kind::List;
  v.depth_ = container_depth(items.begin(), items.end(), [](const Value& x) -> const Value& { return x; });
  v.list_ = std::make_shared<ValueList>(std::move(items));
  return v;
}
Value Value::dict(ValueDict items, bool is_namespace) {
  HLWQ_CHECK(items.size() <= kMaxItems, "jinja: a dict of {} items is over the {} item limit", items.size(),
             kMaxItems);
  Value v;
  v.kind_ = Kind::Dict;
  v.namespace_ = is_namespace;
  v.depth_ = container_depth(items.begin(), items.end(), [](const auto& kv) -> const Value& { return kv.second; });
  v.dict_ = std::make_shared<ValueDict>(std::move(items));
  return v;
}

const std::string& Value::empty_string() {
  static const std::string kEmpty;
  return kEmpty;
}

bool Value::contains_namespace() const {
  if (is_namespace()) return true;
  if (kind_ == Kind::List)
    for (const Value& x : *list_)
      if (x.contains_namespace()) return true;
  if (kind_ == Kind::Dict)
    for (const auto& kv : *dict_)
      if (kv.second.contains_namespace()) return true;
  return false;
}
Value Value::callable(Function fn, std::string name) {
  Value v;
  v.kind_ = Kind::Callable;
  v.fn_ = std::make_shared<Fn>(Fn{std::move(fn), std::move(name)});
  return v;
}

namespace {
Value from_json_at(const nlohmann::ordered_json& j, int depth);
}

Value Value::from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

namespace {
Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  using Value = hlwq::jinja::Value;
  // Refused before recursing: the JSON may come from a request and nest arbitrarily deep.
  HLWQ_CHECK(depth < kMaxValueDepth, "jinja: JSON input nests deeper than {} levels", kMaxValueDepth);
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value::none();
    case nlohmann::ordered_json::value_t::boolean: return Value::boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value::integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      // get<int64_t>() would wrap 2^64-1 to -1.
      HLWQ_CHECK(j.get<uint64_t>() <= uint64_t(INT64_MAX), "jinja: JSON integer {} does not fit in 64 bits",
                 j.get<uint64_t>());
      return Value::integer(j.get<int64_t>());
    }
    case nlohmann::ordered_json::value_t::number_float: return Value::number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value::string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      HLWQ_CHECK(j.size() <= kMaxItems, "jinja: JSON array of {} items is over the {} item limit", j.size(), kMaxItems);
      ValueList items;
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      HLWQ_CHECK(j.size() <= kMaxItems, "jinja: JSON object of {} items is over the {} item limit", j.size(),
                 kMaxItems);
      ValueDict items;
      for (auto it = j.begin(); it != j.end(); ++it) items.emplace_back(it.key(), from_json_at(it.value(), depth + 1));
      return Value::dict(std::move(items));
    }
    default: fail("jinja: cannot convert a JSON {} to a template value", j.type_name());
  }
}
}  // namespace

const Value* Value::find(std::string_view key) const {
  if (kind_ != Kind::Dict) return nullptr;
  for (const auto& [k, v] : *dict_)
    if (k == key) return &v;
  return nullptr;
}

void Value::set(const std::string& key, Value v) const {
  for (auto& [k, old] : *dict_)
    if (k == key) {
      old = std::move(v);
      return;
    }
  HLWQ_CHECK(dict_->size() < kMaxItems, "jinja: a dict of more than {} items is over the limit", kMaxItems);
  dict_->emplace_back(key, std::move(v));
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined:
    case Kind::None: return false;
    case Kind::Bool: return b_;
    case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0.0;
    case Kind::String: return !str().empty();
    case Kind::List: return !list_->empty();
    case Kind::Dict: return namespace_ || !dict_->empty();
    case Kind::Callable: return true;
  }
  return false;
}

std::string Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "undefined";
    case Kind::None: return "none";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "string";
    case Kind::List: return "list";
    case Kind::Dict: return namespace_ ? "namespace" : "dict";
    case Kind::Callable: return "callable";
  }
  return "?";
}

namespace {

// Python float repr: shortest round-trip digits, always with a '.' or exponent.
std::string float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  std::string s = fmt::format("{}", f);
  if (s.find_first_of(".eE") == std::string::npos) s += ".0";
  return s;
}

std::string py_str_repr(const std::string& s) {
  // Python picks single quotes unless the string contains ' and no ".
  char q = (s.find('\'') != std::string::npos && s.find('"') == std::string::npos) ? '"' : '\'';
  std::string out(1, q);
  for (char c : s) {
    switch (c) {
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c == q) {
          out += '\\';
          out += c;
        } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
        } else {
          out += c;
        }
    }
  }
  out += q;
  return out;
}

void json_string(const std::string& s, bool ensure_ascii, std::string& out) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else if (c >= 0x80 && ensure_ascii) {
          auto [cp, len] = utf8_decode_one(s, i);
          if (len == 0) fail("jinja: tojson: string is not valid UTF-8");
          if (cp >= 0x10000) {  // UTF-16 surrogate pair, as json.dumps writes it
            char32_t v = cp - 0x10000;
            out += fmt::format("\\u{:04x}\\u{:04x}", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
          } else {
            out += fmt::format("\\u{:04x}", uint32_t(cp));
          }
          i += len;
          continue;
        } else {
          out += char(c);
        }
    }
    ++i;
  }
  out += '"';
}

void json_dump(const Value& v, bool ensure_ascii, int indent, bool sort_keys, int depth, std::string& out) {
  // json.dumps: compact form uses ", " and ": "; with indent it uses "," + newline and ": ".
  HLWQ_CHECK(out.size() <= kMaxStringBytes, "jinja: tojson produced more than {} bytes", kMaxStringBytes);
  auto newline = [&](int d) {
    out += '\n';
    out.append(size_t(indent * d), ' ');
  };
  switch (v.kind()) {
    case Value::Kind::None: out += "null"; return;
    case Value::Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Value::Kind::Int: out += std::to_string(v.as_int()); return;
    case Value::Kind::Float: {
      double f = v.as_double();
      out += std::isnan(f) ? "NaN" : std::isinf(f) ? (f > 0 ? "Infinity" : "-Infinity") : float_repr(f);
      return;
    }
    case Value::Kind::String: json_string(v.str(), ensure_ascii, out); return;
    case Value::Kind::List: {
      if (v.items().empty()) {
        out += "[]";
        return;
      }
      out += '[';
      for (size_t k = 0; k < v.items().size(); ++k) {
        if (k) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        json_dump(v.items()[k], ensure_ascii, indent, sort_keys, depth + 1, out);
      }
      if (indent >= 0) newline(depth);
      out += ']';
      return;
    }
    case Value::Kind::Dict: {
      if (v.entries().empty()) {
        out += "{}";
        return;
      }
      std::vector<const std::pair<std::string, Value>*> es;
      for (const auto& e : v.entries()) es.push_back(&e);
      if (sort_keys) std::sort(es.begin(), es.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < es.size(); ++k) {
        if (k) out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        json_string(es[k]->first, ensure_ascii, out);
        out += ": ";
        json_dump(es[k]->second, ensure_ascii, indent, sort_keys, depth + 1, out);
      }
      if (indent >= 0) newline(depth);
      out += '}';
      return;
    }
    case Value::Kind::Undefined:
    case Value::Kind::Callable: fail("jinja: tojson: a {} value is not JSON serializable", v.type_name());
  }
}

}  // namespace

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::String: return str();
    default: return repr();
  }
}

namespace {
// Appends repr(v); stops with an error once the text passes kMaxStringBytes (a list holding the same long
// string a million times would otherwise print terabytes).
void repr_into(const Value& v, std::string& out) {
  HLWQ_CHECK(out.size() <= kMaxStringBytes, "jinja: printing a value produced more than {} bytes", kMaxStringBytes);
  switch (v.kind()) {
    case Value::Kind::List:
      out += '[';
      for (size_t k = 0; k < v.items().size(); ++k) {
        if (k) out += ", ";
        repr_into(v.items()[k], out);
      }
      out += ']';
      return;
    case Value::Kind::Dict:
      out += v.is_namespace() ? "<Namespace {" : "{";
      for (size_t k = 0; k < v.entries().size(); ++k) {
        if (k) out += ", ";
        out += py_str_repr(v.entries()[k].first);
        out += ": ";
        repr_into(v.entries()[k].second, out);
      }
      out += v.is_namespace() ? "}>" : "}";
      return;
    default: out += v.repr();
  }
}
}  // namespace

std::string Value::repr() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return b_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return float_repr(f_);
    case Kind::String: return py_str_repr(str());
    case Kind::List:
    case Kind::Dict: {
      std::string out;
      repr_into(*this, out);
      HLWQ_CHECK(out.size() <= kMaxStringBytes, "jinja: printing a value produced more than {} bytes",
                 kMaxStringBytes);
      return out;
    }
    case Kind::Callable: return "<function " + fn_->name + ">";
  }
  return "";
}

std::string Value::to_json(bool ensure_ascii, int indent, bool sort_keys) const {
  std::string out;
  json_dump(*this, ensure_ascii, indent, sort_keys, 0, out);
  HLWQ_CHECK(out.size() <= kMaxStringBytes, "jinja: tojson produced more than {} bytes", kMaxStringBytes);
  return out;
}

bool values_equal(const Value& a, const Value& b) {
  using K = Value::Kind;
  if (a.is_number() && b.is_number()) {
    if (a.kind() == K::Int && b.kind() == K::Int) return a.as_int() == b.as_int();
    return a.as_double() == b.as_double();
  }
  // Python: True == 1, but templates compare bools with bools; keep kinds strict otherwise.
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case K::Undefined:
    case K::None: return true;
    case K::Bool: return a.as_bool() == b.as_bool();
    case K::String: return a.str() == b.str();
    case K::List: {
      if (a.items().size() != b.items().size()) return false;
      for (size_t k = 0; k < a.items().size(); ++k)
        if (!values_equal(a.items()[k], b.items()[k])) return false;
      return true;
    }
    case K::Dict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const Value* o = b.find(k);
        if (!o || !values_equal(v, *o)) return false;
      }
      return true;
    }
    case K::Callable: return &a.fn() == &b.fn();
    default: return false;
  }
}

std::vector<char32_t> utf8_to_code_points(std::string_view s) {
  std::vector<char32_t> out;
  size_t i = 0;
  while (i < s.size()) {
    auto [cp, len] = utf8_decode_one(s, i);
    if (len == 0) {  // never produced by valid template input; keep the byte so nothing is lost
      cp = static_cast<unsigned char>(s[i]);
      len = 1;
    }
    out.push_back(cp);
    i += len;
  }
  return out;
}

std::string code_points_to_utf8(const std::vector<char32_t>& cps) {
  std::string out;
  for (char32_t cp : cps) utf8_append(out, cp);
  return out;
}

bool is_py_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
         cp == 0x3000;
}

}  // namespace hlwq::jinja
