// Runtime values of the Jinja subset used by chat templates, modelled on the Python objects Jinja2 sees
// when transformers renders a template: undefined, None, bool, int, float, str, list (tuples too), dict
// (insertion-ordered), namespace (a dict with reference semantics, mutable through `set ns.x = ...`) and
// callables (macros, namespace(), raise_exception, range). Lists, dicts and callables are shared by
// reference, so copying a Value is cheap and mutations through a namespace are seen by every holder.
// String conversions follow Python: str() for output ({{ x }}), repr() inside containers, json.dumps with
// transformers' tojson defaults (separators ", " / ": ", ensure_ascii=False).
// Resource limits (a template comes from a downloaded model directory and is not trusted): a string holds at
// most kMaxStringBytes, a list or dict at most kMaxItems entries and a value nests at most kMaxValueDepth
// containers; constructors throw hlwq::Error past them, so every recursive walk (repr, tojson, ==,
// destruction) is bounded. A namespace may not hold a namespace through `set ns.x = ...`, which keeps values
// acyclic (a namespace that contains itself could be neither printed nor freed) and bounds how much deeper a
// namespace can grow after its holders recorded their depth (at most kMaxValueDepth more).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq::jinja {

inline constexpr size_t kMaxStringBytes = size_t(32) << 20;
inline constexpr size_t kMaxItems = size_t(1) << 20;
inline constexpr int kMaxValueDepth = 64;

class Value;
using ValueList = std::vector<Value>;
using ValueDict = std::vector<std::pair<std::string, Value>>;  // insertion order, unique keys
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(const ValueList& args, const Kwargs& kwargs)>;

class Value {
 public:
  enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };

  Value() = default;  // undefined
  static Value none();
  static Value boolean(bool b);
  static Value integer(int64_t i);
  static Value number(double f);
  static Value string(std::string s);
  static Value list(ValueList items = {});
  static Value dict(ValueDict items = {}, bool is_namespace = false);
  static Value callable(Function fn, std::string name);
  // Throws past kMaxValueDepth (nesting) and the size limits.
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_number() const { return kind_ == Kind::Int || kind_ == Kind::Float; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_namespace() const { return kind_ == Kind::Dict && namespace_; }
  bool is_callable() const { return kind_ == Kind::Callable; }

  bool as_bool() const { return b_; }
  int64_t as_int() const { return i_; }
  double as_double() const { return kind_ == Kind::Int ? double(i_) : f_; }
  const std::string& str() const { return s_ ? *s_ : empty_string(); }
  ValueList& items() const { return *list_; }
  ValueDict& entries() const { return *dict_; }
  const Function& fn() const { return fn_->fn; }
  const std::string& fn_name() const { return fn_->name; }

  // Dict lookup: nullptr when absent.
  const Value* find(std::string_view key) const;
  void set(const std::string& key, Value v) const;  // dict/namespace insert-or-assign
  // Containers nested inside this value, counting itself (scalars 0) as recorded at construction.
  int depth() const { return depth_; }
  // True when a namespace is reachable from this value (itself included).
  bool contains_namespace() const;

  bool truthy() const;
  std::string type_name() const;
  std::string to_str() const;   // Python str()
  std::string repr() const;     // Python repr()
  // json.dumps(self, ensure_ascii, indent (<0: compact with ", " and ": "), sort_keys).
  std::string to_json(bool ensure_ascii = false, int indent = -1, bool sort_keys = false) const;

 private:
  struct Fn {
    Function fn;
    std::string name;
  };
  static const std::string& empty_string();

  Kind kind_ = Kind::Undefined;
  bool namespace_ = false;
  uint8_t depth_ = 0;
  bool b_ = false;
  int64_t i_ = 0;
  double f_ = 0.0;
  std::shared_ptr<const std::string> s_;  // shared: copying a long string value is O(1)
  std::shared_ptr<ValueList> list_;
  std::shared_ptr<ValueDict> dict_;
  std::shared_ptr<Fn> fn_;
};

// Python ==, including int/float cross-comparison and deep list/dict equality.
bool values_equal(const Value& a, const Value& b);

// Code points of a UTF-8 string (Python indexes and slices strings by code point).
std::vector<char32_t> utf8_to_code_points(std::string_view s);
std::string code_points_to_utf8(const std::vector<char32_t>& cps);
// Python str.isspace() for one code point.
bool is_py_space(char32_t cp);

}  // namespace hlwq::jinja
