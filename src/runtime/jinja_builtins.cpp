// Filters, tests and methods. Strings are handled by code point where Python would (strip sets, indexing,
// case mapping through utf8proc), so non-ASCII content behaves as it does under transformers.
#include "runtime/jinja_builtins.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace hlwq::jinja {

namespace {

const Value* kwarg(const Kwargs& kw, const char* name) {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

// Positional argument k, else keyword `name`, else nullptr.
const Value* arg(const ValueList& args, const Kwargs& kw, size_t k, const char* name) {
  return k < args.size() ? &args[k] : kwarg(kw, name);
}

const std::string& need_str(const Value& v, const std::string& what) {
  if (!v.is_string()) fail("{} expects a string, got {}", what, v.type_name());
  return v.str();
}

// Python str.strip/lstrip/rstrip: chars=None strips whitespace, otherwise any code point in chars.
std::string py_strip(const std::string& s, const Value* chars, bool left, bool right) {
  std::vector<char32_t> cps = utf8_to_code_points(s);
  std::vector<char32_t> set;
  bool ws = !chars || chars->is_none() || chars->is_undefined();
  if (!ws) set = utf8_to_code_points(need_str(*chars, "strip(chars)"));
  auto drop = [&](char32_t c) { return ws ? is_py_space(c) : std::find(set.begin(), set.end(), c) != set.end(); };
  size_t b = 0, e = cps.size();
  if (left)
    while (b < e && drop(cps[b])) ++b;
  if (right)
    while (e > b && drop(cps[e - 1])) --e;
  return code_points_to_utf8(std::vector<char32_t>(cps.begin() + long(b), cps.begin() + long(e)));
}

std::string map_case(const std::string& s, bool upper) {
  std::vector<char32_t> cps = utf8_to_code_points(s);
  for (char32_t& c : cps) c = char32_t(upper ? utf8proc_toupper(utf8proc_int32_t(c)) : utf8proc_tolower(utf8proc_int32_t(c)));
  return code_points_to_utf8(cps);
}

Value py_split(const std::string& s, const Value* sep, int64_t maxsplit) {
  ValueList out;
  if (!sep || sep->is_none()) {  // whitespace split, runs collapse, no empty strings
    std::vector<char32_t> cps = utf8_to_code_points(s);
    size_t i = 0;
    while (i < cps.size()) {
      while (i < cps.size() && is_py_space(cps[i])) ++i;
      if (i >= cps.size()) break;
      size_t j = i;
      if (maxsplit >= 0 && int64_t(out.size()) == maxsplit) j = cps.size();
      else
        while (j < cps.size() && !is_py_space(cps[j])) ++j;
      out.push_back(Value::string(code_points_to_utf8(std::vector<char32_t>(cps.begin() + long(i), cps.begin() + long(j)))));
      i = j;
    }
    return Value::list(std::move(out));
  }
  const std::string& d = need_str(*sep, "split(sep)");
  if (d.empty()) fail("split(): empty separator");
  size_t start = 0;
  while (maxsplit < 0 || int64_t(out.size()) < maxsplit) {
    size_t at = s.find(d, start);
    if (at == std::string::npos) break;
    out.push_back(Value::string(s.substr(start, at - start)));
    start = at + d.size();
  }
  out.push_back(Value::string(s.substr(start)));
  return Value::list(std::move(out));
}

std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count) {
  std::string out;
  size_t start = 0;
  int64_t done = 0;
  if (from.empty()) fail("replace(): empty search string is not supported");
  while (count < 0 || done < count) {
    size_t at = s.find(from, start);
    if (at == std::string::npos) break;
    out.append(s, start, at - start).append(to);
    HLWQ_CHECK(out.size() <= kMaxStringBytes, "replace(): the result is over the {} byte limit", kMaxStringBytes);
    start = at + from.size();
    ++done;
  }
  return out.append(s, start);
}

bool affix_match(const std::string& s, const Value& a, bool prefix) {
  auto one = [&](const std::string& x) {
    return x.size() <= s.size() && s.compare(prefix ? 0 : s.size() - x.size(), x.size(), x) == 0;
  };
  if (a.is_list()) {  // Python accepts a tuple of candidates
    for (const Value& x : a.items())
      if (one(need_str(x, prefix ? "startswith" : "endswith"))) return true;
    return false;
  }
  return one(need_str(a, prefix ? "startswith" : "endswith"));
}

Value attr_of(const Value& v, const std::string& path) {
  Value cur = v;
  size_t start = 0;
  while (start <= path.size()) {
    size_t dot = path.find('.', start);
    std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const Value* f = cur.find(key);
    cur = f ? *f : Value();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return cur;
}

}  // namespace

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined: return {};
    case Value::Kind::List: return v.items();
    case Value::Kind::Dict: {
      ValueList keys;
      for (const auto& [k, x] : v.entries()) keys.push_back(Value::string(k));
      return keys;
    }
    case Value::Kind::String: {
      std::vector<char32_t> cps = utf8_to_code_points(v.str());
      HLWQ_CHECK(cps.size() <= kMaxItems, "iterating a string of {} characters is over the {} item limit", cps.size(),
                 kMaxItems);
      ValueList chars;
      for (char32_t c : cps) chars.push_back(Value::string(code_points_to_utf8({c})));
      return chars;
    }
    default: fail("'{}' value is not iterable", v.type_name());
  }
}

bool builtin_test(const std::string& name, const Value& v, const ValueList& args, bool& unknown) {
  using K = Value::Kind;
  unknown = false;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number();
  if (name == "integer") return v.kind() == K::Int;
  if (name == "float") return v.kind() == K::Float;
  if (name == "boolean") return v.kind() == K::Bool;
  if (name == "true") return v.kind() == K::Bool && v.as_bool();
  if (name == "false") return v.kind() == K::Bool && !v.as_bool();
  if (name == "mapping") return v.is_dict() && !v.is_namespace();
  if (name == "callable") return v.is_callable();
  // Jinja: anything iter() accepts (Undefined included); sequences also need len() and [].
  if (name == "iterable" || name == "sequence")
    return v.is_undefined() || v.is_string() || v.is_list() || (v.is_dict() && !v.is_namespace());
  if (name == "odd" || name == "even") {
    if (v.kind() != K::Int) fail("test '{}' expects an integer, got {}", name, v.type_name());
    return (v.as_int() % 2 != 0) == (name == "odd");
  }
  if (name == "eq" || name == "equalto" || name == "==" || name == "sameas" || name == "ne" || name == "in") {
    if (args.size() != 1) fail("test '{}' takes one argument, got {}", name, args.size());
    if (name == "ne") return !values_equal(v, args[0]);
    if (name == "in") {
      for (const Value& x : iterate(args[0]))
        if (values_equal(v, x)) return true;
      return args[0].is_string() && v.is_string() && args[0].str().find(v.str()) != std::string::npos;
    }
    return values_equal(v, args[0]);
  }
  unknown = true;
  return false;
}

Value builtin_method(const Value& obj, const std::string& name, const ValueList& args, const Kwargs& kwargs,
                     bool& unknown) {
  unknown = false;
  if (obj.is_string()) {
    const std::string& s = obj.str();
    if (name == "startswith" || name == "endswith") {
      const Value* a = arg(args, kwargs, 0, "prefix");
      if (!a) fail("str.{}() needs an argument", name);
      return Value::boolean(affix_match(s, *a, name == "startswith"));
    }
    if (name == "strip" || name == "lstrip" || name == "rstrip")
      return Value::string(py_strip(s, arg(args, kwargs, 0, "chars"), name != "rstrip", name != "lstrip"));
    if (name == "split") {
      const Value* m = arg(args, kwargs, 1, "maxsplit");
      return py_split(s, arg(args, kwargs, 0, "sep"), m ? m->as_int() : -1);
    }
    if (name == "upper" || name == "lower") return Value::string(map_case(s, name == "upper"));
    if (name == "replace") {
      if (args.size() < 2) fail("str.replace() needs old and new");
      return Value::string(py_replace(s, need_str(args[0], "replace"), need_str(args[1], "replace"),
                                      args.size() > 2 ? args[2].as_int() : -1));
    }
    if (name == "find") {
      if (args.empty()) fail("str.find() needs an argument");
      size_t at = s.find(need_str(args[0], "find"));
      return Value::integer(at == std::string::npos ? -1 : int64_t(utf8_to_code_points(s.substr(0, at)).size()));
    }
    if (name == "join") {
      if (args.empty()) fail("str.join() needs an argument");
      std::string out;
      ValueList xs = iterate(args[0]);
      for (size_t k = 0; k < xs.size(); ++k) {
        out += (k ? s : "") + need_str(xs[k], "str.join() item");
        HLWQ_CHECK(out.size() <= kMaxStringBytes, "str.join(): the result is over the {} byte limit", kMaxStringBytes);
      }
      return Value::string(std::move(out));
    }
    if (name == "capitalize" || name == "title") {
      std::string low = map_case(s, false);
      std::vector<char32_t> cps = utf8_to_code_points(low);
      for (size_t k = 0; k < cps.size(); ++k) {
        bool start = k == 0 || (name == "title" && !utf8proc_isupper(utf8proc_int32_t(cps[k - 1])) &&
                                                       !utf8proc_islower(utf8proc_int32_t(cps[k - 1])));
        if (start) cps[k] = char32_t(utf8proc_toupper(utf8proc_int32_t(cps[k])));
      }
      return Value::string(code_points_to_utf8(cps));
    }
  } else if (obj.is_dict()) {
    if (name == "items" || name == "keys" || name == "values") {
      ValueList out;
      for (const auto& [k, v] : obj.entries()) {
        if (name == "items") out.push_back(Value::list({Value::string(k), v}));
        else out.push_back(name == "keys" ? Value::string(k) : v);
      }
      return Value::list(std::move(out));
    }
    if (name == "get") {
      if (args.empty()) fail("dict.get() needs a key");
      const Value* f = obj.find(need_str(args[0], "dict.get(key)"));
      return f ? *f : (args.size() > 1 ? args[1] : Value::none());
    }
  }
  unknown = true;
  return Value();
}

Value builtin_filter(const std::string& name, const Value& v, const ValueList& args, const Kwargs& kwargs,
                     bool& unknown) {
  unknown = false;
  if (name == "trim") return Value::string(py_strip(v.to_str(), arg(args, kwargs, 0, "chars"), true, true));
  if (name == "length" || name == "count") {
    if (v.is_string()) return Value::integer(int64_t(utf8_to_code_points(v.str()).size()));
    if (v.is_dict()) return Value::integer(int64_t(v.entries().size()));
    return Value::integer(int64_t(iterate(v).size()));
  }
  if (name == "tojson") {
    const Value* indent = arg(args, kwargs, 0, "indent");
    const Value* ascii = kwarg(kwargs, "ensure_ascii");
    const Value* sort = kwarg(kwargs, "sort_keys");
    int ind = -1;
    if (indent && indent->kind() == Value::Kind::Int) {
      // json.dumps accepts any indent; a huge one would only build a huge string.
      if (indent->as_int() < 0 || indent->as_int() > 64) fail("indent must be in [0, 64], got {}", indent->as_int());
      ind = int(indent->as_int());
    }
    return Value::string(v.to_json(ascii && ascii->truthy(), ind, sort && sort->truthy()));
  }
  if (name == "string") return Value::string(v.to_str());
  if (name == "safe") return v;
  if (name == "items") {
    if (v.is_undefined()) return Value::list();
    if (!v.is_dict()) fail("expects a mapping, got {}", v.type_name());
    bool unused;
    return builtin_method(v, "items", {}, {}, unused);
  }
  if (name == "join") {
    const Value* sep = arg(args, kwargs, 0, "d");
    const Value* attr = arg(args, kwargs, 1, "attribute");
    std::string out;
    ValueList xs = iterate(v);
    for (size_t k = 0; k < xs.size(); ++k) {
      out += (k && sep ? sep->to_str() : "") + (attr ? attr_of(xs[k], attr->to_str()) : xs[k]).to_str();
      HLWQ_CHECK(out.size() <= kMaxStringBytes, "the joined text is over the {} byte limit", kMaxStringBytes);
    }
    return Value::string(std::move(out));
  }
  if (name == "default" || name == "d") {
    const Value* def = arg(args, kwargs, 0, "default_value");
    const Value* boolean = arg(args, kwargs, 1, "boolean");
    bool use = v.is_undefined() || (boolean && boolean->truthy() && !v.truthy());
    return use ? (def ? *def : Value::string("")) : v;
  }
  if (name == "first" || name == "last") {
    ValueList xs = iterate(v);
    if (xs.empty()) return Value();
    return name == "first" ? xs.front() : xs.back();
  }
  if (name == "lower" || name == "upper") return Value::string(map_case(v.to_str(), name == "upper"));
  if (name == "capitalize" || name == "title") {
    bool unused;
    return builtin_method(Value::string(v.to_str()), name, {}, {}, unused);
  }
  if (name == "replace") {
    if (args.size() < 2) fail("filter 'replace' needs old and new");
    return Value::string(py_replace(v.to_str(), args[0].to_str(), args[1].to_str(),
                                    args.size() > 2 ? args[2].as_int() : -1));
  }
  if (name == "list") return Value::list(iterate(v));
  if (name == "reverse") {
    if (v.is_string()) {
      std::vector<char32_t> cps = utf8_to_code_points(v.str());
      std::reverse(cps.begin(), cps.end());
      return Value::string(code_points_to_utf8(cps));
    }
    ValueList xs = iterate(v);
    std::reverse(xs.begin(), xs.end());
    return Value::list(std::move(xs));
  }
  if (name == "int") {
    if (v.kind() == Value::Kind::Int) return v;
    if (v.is_number()) {
      // Converting NaN, inf or |x| >= 2^63 to int64 is undefined behaviour in C++.
      const double d = v.as_double();
      if (!(d > -9223372036854775808.0 && d < 9223372036854775808.0))
        fail("cannot convert {} to a 64-bit integer", v.repr());
      return Value::integer(int64_t(d));
    }
    if (v.is_string()) {
      try {
        return Value::integer(std::stoll(v.str()));
      } catch (const std::exception&) {
      }
    }
    const Value* def = arg(args, kwargs, 0, "default");
    return def ? *def : Value::integer(0);
  }
  if (name == "float") {
    if (v.is_number()) return Value::number(v.as_double());
    if (v.is_string()) {
      try {
        return Value::number(std::stod(v.str()));
      } catch (const std::exception&) {
      }
    }
    const Value* def = arg(args, kwargs, 0, "default");
    return def ? *def : Value::number(0.0);
  }
  if (name == "abs") {
    if (v.kind() == Value::Kind::Int) {
      if (v.as_int() == INT64_MIN) fail("integer overflow: abs({}) does not fit in 64 bits", v.as_int());
      return Value::integer(v.as_int() < 0 ? -v.as_int() : v.as_int());
    }
    if (v.is_number()) return Value::number(std::fabs(v.as_double()));
    fail("filter 'abs' expects a number, got {}", v.type_name());
  }
  if (name == "map") {
    const Value* attr = kwarg(kwargs, "attribute");
    ValueList out;
    for (const Value& x : iterate(v)) {
      if (attr) {
        out.push_back(attr_of(x, attr->to_str()));
      } else {
        if (args.empty()) fail("filter 'map' needs a filter name or attribute=");
        bool unk;
        out.push_back(builtin_filter(args[0].to_str(), x, ValueList(args.begin() + 1, args.end()), {}, unk));
        if (unk) fail("filter 'map': unsupported filter '{}'", args[0].to_str());
      }
    }
    return Value::list(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    bool by_attr = name.ends_with("attr");
    size_t t0 = by_attr ? 1 : 0;
    if (by_attr && args.empty()) fail("filter '{}' needs an attribute name", name);
    ValueList out;
    for (const Value& x : iterate(v)) {
      Value subject = by_attr ? attr_of(x, args[0].to_str()) : x;
      bool pass;
      if (args.size() > t0) {
        bool unk;
        pass = builtin_test(args[t0].to_str(), subject, ValueList(args.begin() + long(t0) + 1, args.end()), unk);
        if (unk) fail("filter '{}': unsupported test '{}'", name, args[t0].to_str());
      } else {
        pass = subject.truthy();
      }
      if (pass == (name == "selectattr" || name == "select")) out.push_back(x);
    }
    return Value::list(std::move(out));
  }
  unknown = true;
  return Value();
}

}  // namespace hlwq::jinja
