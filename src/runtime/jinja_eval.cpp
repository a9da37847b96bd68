// Tree-walking evaluator for the Jinja subset. Scopes are a chain of frames: the root frame holds the
// context, globals and top-level `set`s; each for-loop iteration and each macro call gets a child frame
// (a macro's parent is the root frame, not its caller, as in Jinja). Errors from builtins are rethrown with
// the template origin and line/column of the expression that failed.
#include "runtime/jinja_eval.h"

#include <cmath>
#include <limits>
#include <unordered_map>

#include "core/error.h"
#include "runtime/jinja_builtins.h"

namespace hlwq::jinja {

namespace {

constexpr int kMaxMacroDepth = 64;  // a recursive macro past this depth is a template bug, not a workload

// Checked 64-bit integer arithmetic with Python's semantics; overflow is an error, not a wrapped value (Python
// would switch to big integers, which the templates hlwq renders never need).
int64_t int_op(const std::string& op, int64_t a, int64_t b) {
  int64_t r = 0;
  bool ovf = false;
  if (op == "+") ovf = __builtin_add_overflow(a, b, &r);
  else if (op == "-") ovf = __builtin_sub_overflow(a, b, &r);
  else if (op == "*") ovf = __builtin_mul_overflow(a, b, &r);
  else if (op == "//" || op == "%") {
    // b != 0 was checked; INT64_MIN / -1 is the one quotient that does not fit (and traps on x86).
    if (a == std::numeric_limits<int64_t>::min() && b == -1) {
      if (op == "%") return 0;
      ovf = true;
    } else {
      int64_t q = a / b, m = a % b;
      if (m != 0 && ((m < 0) != (b < 0))) {  // Python floors: the remainder takes the divisor's sign
        --q;
        m += b;
      }
      r = op == "//" ? q : m;
    }
  } else if (op == "**") {  // b >= 0: exponentiation by squaring, every product checked
    r = 1;
    int64_t base = a, e = b;
    while (e > 0 && !ovf) {
      if (e & 1) ovf = __builtin_mul_overflow(r, base, &r);
      e >>= 1;
      if (e > 0 && !ovf) ovf = __builtin_mul_overflow(base, base, &base);
    }
  }
  if (ovf) fail("integer overflow: {} {} {} does not fit in 64 bits", a, op, b);
  return r;
}

struct Frame {
  std::unordered_map<std::string, Value> vars;
  Frame* parent = nullptr;

  const Value* lookup(const std::string& name) const {
    for (const Frame* f = this; f; f = f->parent) {
      auto it = f->vars.find(name);
      if (it != f->vars.end()) return &it->second;
    }
    return nullptr;
  }
};

enum class Flow { Normal, Break, Continue };

// Python slice indices for a sequence of length n.
std::vector<size_t> slice_indices(int64_t n, const Value& start, const Value& stop, const Value& step) {
  int64_t st = step.is_undefined() || step.is_none() ? 1 : step.as_int();
  if (st == 0) fail("slice step cannot be zero");
  if (st == std::numeric_limits<int64_t>::min()) st = -n - 1;  // same effect, and -st stays representable
  auto clamp = [&](const Value& v, int64_t def) {
    if (v.is_undefined() || v.is_none()) return def;
    int64_t x = v.as_int();
    if (x < 0) x += n;
    if (st > 0) return std::clamp<int64_t>(x, 0, n);
    return std::clamp<int64_t>(x, -1, n - 1);
  };
  int64_t b = clamp(start, st > 0 ? 0 : n - 1), e = clamp(stop, st > 0 ? n : -1);
  std::vector<size_t> out;
  // i stays in [-1, n] before each step and |st| is bounded by the checks above or below, so i + st cannot
  // overflow once st is clamped to n + 1 in magnitude (a larger step takes one element anyway).
  st = std::clamp<int64_t>(st, -n - 1, n + 1);
  if (st == 0) st = 1;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) out.push_back(size_t(i));
  return out;
}

class Evaluator {
 public:
  Evaluator(const Template& t, const RenderLimits& limits) : t_(t), lim_(limits) {}

  std::string run(const ValueDict& context) {
    for (const auto& [k, v] : context) root_.vars[k] = v;
    install_globals();
    std::string out;
    exec(t_.body, root_, out);
    return out;
  }

 private:
  // One nested evaluation frame: counts a step and bounds the C++ recursion of exec/eval.
  struct Nest {
    Evaluator& ev;
    Nest(Evaluator& e, size_t pos) : ev(e) {
      ev.tick(pos);
      if (++ev.nest_ > ev.lim_.max_recursion)
        ev.error(pos, fmt::format("evaluation nests deeper than {} levels", ev.lim_.max_recursion));
    }
    ~Nest() { --ev.nest_; }
    Nest(const Nest&) = delete;
    Nest& operator=(const Nest&) = delete;
  };

  // One step of the budget (Nest frames, and each loop iteration: an empty loop body evaluates nothing).
  void tick(size_t pos) {
    if (++steps_ > lim_.max_steps)
      error(pos, fmt::format("rendering took more than {} steps; refusing to continue", lim_.max_steps));
  }

  // Counts the bytes (strings) or items (containers) an operation touches against the work budget.
  void charge(size_t pos, const Value& v) {
    int64_t n = 1;
    if (v.is_string()) n += int64_t(v.str().size());
    else if (v.is_list()) n += int64_t(v.items().size());
    else if (v.is_dict()) n += int64_t(v.entries().size());
    work_ += n;
    if (work_ > lim_.max_work)
      error(pos, fmt::format("rendering touched more than {} bytes/items; refusing to continue", lim_.max_work));
  }
  void emit(size_t pos, std::string& out, const std::string& s) {
    if (out.size() + s.size() > lim_.max_output)
      error(pos, fmt::format("rendered text would exceed {} bytes", lim_.max_output));
    work_ += int64_t(s.size());
    out += s;
  }

  [[noreturn]] void error(size_t pos, const std::string& msg) const {
    fail("chat template {} ({}): {}", t_.origin, jinja_position(t_.source, pos), msg);
  }

  void install_globals() {
    const std::string origin = t_.origin;
    root_.vars["namespace"] = Value::callable(
        [](const ValueList& args, const Kwargs& kwargs) {
          ValueDict d;
          if (!args.empty() && args[0].is_dict()) d = args[0].entries();
          for (const auto& kv : kwargs) d.push_back(kv);
          return Value::dict(std::move(d), /*is_namespace=*/true);
        },
        "namespace");
    root_.vars["raise_exception"] = Value::callable(
        [origin](const ValueList& args, const Kwargs&) -> Value {
          fail("chat template {} raised an exception: {}", origin, args.empty() ? "" : args[0].to_str());
        },
        "raise_exception");
    root_.vars["range"] = Value::callable(
        [](const ValueList& args, const Kwargs&) {
          if (args.empty() || args.size() > 3) fail("range() takes 1 to 3 arguments");
          for (const Value& a : args)
            if (a.kind() != Value::Kind::Int) fail("range() arguments must be integers, got {}", a.type_name());
          int64_t b = args.size() > 1 ? args[0].as_int() : 0, e = args.size() > 1 ? args[1].as_int() : args[0].as_int();
          int64_t s = args.size() > 2 ? args[2].as_int() : 1;
          if (s == 0) fail("range() step must not be zero");
          // Count first (in 128 bits: e - b can overflow int64), so a huge range is refused before allocating.
          __int128 span = s > 0 ? __int128(e) - b : __int128(b) - e;
          __int128 count = span <= 0 ? 0 : (span + (s > 0 ? s : -__int128(s)) - 1) / (s > 0 ? s : -__int128(s));
          if (count > __int128(kMaxItems)) fail("range() of {} items is over the {} item limit", int64_t(count), kMaxItems);
          ValueList out;
          for (int64_t k = 0; k < int64_t(count); ++k) out.push_back(Value::integer(int64_t(b + __int128(k) * s)));
          return Value::list(std::move(out));
        },
        "range");
  }

  // ---- statements ----

  Flow exec(const Body& body, Frame& f, std::string& out) {
    for (const StmtPtr& s : body) {
      Nest nest(*this, s->pos);
      Flow fl = exec_one(*s, f, out);
      if (fl != Flow::Normal) return fl;
    }
    return Flow::Normal;
  }

  Flow exec_one(const Stmt& s, Frame& f, std::string& out) {
    switch (s.kind) {
      case Stmt::Kind::Text: emit(s.pos, out, s.text); return Flow::Normal;
      case Stmt::Kind::Output: {
        Value v = eval(*s.expr, f);
        emit(s.pos, out, v.is_string() ? v.str() : v.to_str());
        return Flow::Normal;
      }
      case Stmt::Kind::If:
        for (const auto& [cond, body] : s.branches)
          if (eval(*cond, f).truthy()) return exec(body, f, out);
        return exec(s.else_body, f, out);
      case Stmt::Kind::For: return exec_for(s, f, out);
      case Stmt::Kind::Set: {
        Value v = eval(*s.expr, f);
        if (s.names.size() == 1) {
          f.vars[s.names[0]] = std::move(v);
        } else {
          const Value* ns = f.lookup(s.names[0]);
          if (!ns || !ns->is_namespace())
            error(s.pos, fmt::format("cannot set attribute '{}' on '{}': it is not a namespace()", s.names[1],
                                     s.names[0]));
          // Keeps values acyclic and their depth bounded (jinja_value.h).
          if (v.contains_namespace())
            error(s.pos, fmt::format("cannot store a namespace (or a container holding one) in '{}.{}'", s.names[0],
                                     s.names[1]));
          try {
            ns->set(s.names[1], std::move(v));
          } catch (const Error& e) {
            error(s.pos, e.what());
          }
        }
        return Flow::Normal;
      }
      case Stmt::Kind::SetBlock: {
        std::string captured;
        exec(s.body, f, captured);
        f.vars[s.names[0]] = Value::string(std::move(captured));
        return Flow::Normal;
      }
      case Stmt::Kind::Macro: f.vars[s.names[0]] = make_macro(s); return Flow::Normal;
      case Stmt::Kind::Break: return Flow::Break;
      case Stmt::Kind::Continue: return Flow::Continue;
      case Stmt::Kind::Block: return exec(s.body, f, out);
    }
    return Flow::Normal;
  }

  void bind_targets(const Stmt& s, const Value& item, Frame& f) {
    if (s.names.size() == 1) {
      f.vars[s.names[0]] = item;
      return;
    }
    if (!item.is_list() || item.items().size() != s.names.size())
      error(s.pos, fmt::format("cannot unpack {} into {} loop variables", item.repr(), s.names.size()));
    for (size_t k = 0; k < s.names.size(); ++k) f.vars[s.names[k]] = item.items()[k];
  }

  Flow exec_for(const Stmt& s, Frame& f, std::string& out) {
    Value seq = eval(*s.expr, f);
    ValueList items;
    try {
      items = iterate(seq);
    } catch (const Error& e) {
      error(s.expr->pos, e.what());
    }
    charge(s.pos, seq);
    if (s.filter) {
      ValueList kept;
      for (const Value& it : items) {
        Frame tmp{{}, &f};
        bind_targets(s, it, tmp);
        if (eval(*s.filter, tmp).truthy()) kept.push_back(it);
      }
      items = std::move(kept);
    }
    const auto n = int64_t(items.size());
    for (int64_t k = 0; k < n; ++k) {
      tick(s.pos);
      Frame iter{{}, &f};
      bind_targets(s, items[size_t(k)], iter);
      iter.vars["loop"] = Value::dict({
          {"index0", Value::integer(k)},
          {"index", Value::integer(k + 1)},
          {"revindex0", Value::integer(n - k - 1)},
          {"revindex", Value::integer(n - k)},
          {"first", Value::boolean(k == 0)},
          {"last", Value::boolean(k == n - 1)},
          {"length", Value::integer(n)},
          {"previtem", k > 0 ? items[size_t(k - 1)] : Value()},
          {"nextitem", k + 1 < n ? items[size_t(k + 1)] : Value()},
      });
      if (exec(s.body, iter, out) == Flow::Break) break;
    }
    if (n == 0) exec(s.else_body, f, out);
    return Flow::Normal;
  }

  Value make_macro(const Stmt& s) {
    return Value::callable(
        [this, &s](const ValueList& args, const Kwargs& kwargs) {
          if (args.size() > s.params.size())
            error(s.pos, fmt::format("macro '{}' takes {} arguments, got {}", s.names[0], s.params.size(), args.size()));
          if (++depth_ > kMaxMacroDepth) error(s.pos, fmt::format("macro '{}' recursed too deeply", s.names[0]));
          Frame mf{{}, &root_};
          for (size_t k = 0; k < s.params.size(); ++k) {
            const auto& [pname, def] = s.params[k];
            Value v;
            bool given = false;
            if (k < args.size()) {
              v = args[k];
              given = true;
            }
            for (const auto& [kn, kv] : kwargs)
              if (kn == pname) {
                v = kv;
                given = true;
              }
            if (!given && def) v = eval(*def, mf);
            mf.vars[pname] = v;
          }
          for (const auto& [kn, kv] : kwargs) {
            bool known = false;
            for (const auto& p : s.params) known |= p.first == kn;
            if (!known) error(s.pos, fmt::format("macro '{}' has no parameter '{}'", s.names[0], kn));
          }
          std::string out;
          exec(s.body, mf, out);
          --depth_;
          return Value::string(std::move(out));
        },
        s.names[0]);
  }

  // ---- expressions ----

  Value eval(const Expr& e, Frame& f) {
    Nest nest(*this, e.pos);
    Value v;
    try {
      v = eval_kind(e, f);
    } catch (const Error& err) {
      // A limit hit inside a value constructor has no position yet; everything else already names one.
      if (std::string_view(err.what()).starts_with("chat template ")) throw;
      error(e.pos, err.what());
    }
    switch (e.kind) {  // operations that build or scan values pay for what they touch
      case Expr::Kind::Binary:
      case Expr::Kind::Call:
      case Expr::Kind::Filter:
      case Expr::Kind::Slice:
      case Expr::Kind::ListLit:
      case Expr::Kind::TupleLit:
      case Expr::Kind::DictLit: charge(e.pos, v); break;
      default: break;
    }
    return v;
  }

  Value eval_kind(const Expr& e, Frame& f) {
    switch (e.kind) {
      case Expr::Kind::Literal: return e.value;
      case Expr::Kind::Name: {
        const Value* v = f.lookup(e.name);
        return v ? *v : Value();
      }
      case Expr::Kind::Attr: {
        Value obj = eval(*e.a, f);
        if (obj.is_undefined()) error(e.pos, fmt::format("'{}' is undefined (reading attribute '{}')", describe(*e.a), e.name));
        const Value* v = obj.find(e.name);
        return v ? *v : Value();
      }
      case Expr::Kind::Index: return eval_index(e, eval(*e.a, f), eval(*e.b, f));
      case Expr::Kind::Slice: {
        Value obj = eval(*e.a, f);
        Value parts[3];
        for (size_t k = 0; k < 3; ++k)
          if (e.args[k]) parts[k] = eval(*e.args[k], f);
        for (const Value& p : parts)
          if (!p.is_undefined() && !p.is_none() && p.kind() != Value::Kind::Int) error(e.pos, "slice bounds must be integers");
        if (obj.is_list()) {
          ValueList out;
          for (size_t i : slice_indices(int64_t(obj.items().size()), parts[0], parts[1], parts[2])) out.push_back(obj.items()[i]);
          return Value::list(std::move(out));
        }
        if (obj.is_string()) {
          std::vector<char32_t> cps = utf8_to_code_points(obj.str()), out;
          for (size_t i : slice_indices(int64_t(cps.size()), parts[0], parts[1], parts[2])) out.push_back(cps[i]);
          return Value::string(code_points_to_utf8(out));
        }
        error(e.pos, fmt::format("cannot slice a {} value", obj.type_name()));
      }
      case Expr::Kind::Call: return eval_call(e, f);
      case Expr::Kind::Filter: {
        Value v = eval(*e.a, f);
        auto [args, kwargs] = eval_args(e, f);
        charge(e.pos, v);
        bool unknown = false;
        Value r;
        try {
          r = builtin_filter(e.name, v, args, kwargs, unknown);
        } catch (const Error& err) {
          error(e.pos, fmt::format("filter '{}': {}", e.name, err.what()));
        }
        if (unknown) error(e.pos, fmt::format("unsupported filter '{}'", e.name));
        return r;
      }
      case Expr::Kind::Test: {
        Value v = eval(*e.a, f);
        auto [args, kwargs] = eval_args(e, f);
        bool unknown = false, r = false;
        try {
          r = builtin_test(e.name, v, args, unknown);
        } catch (const Error& err) {
          error(e.pos, fmt::format("test '{}': {}", e.name, err.what()));
        }
        if (unknown) error(e.pos, fmt::format("unsupported test '{}'", e.name));
        return Value::boolean(r != e.negated);
      }
      case Expr::Kind::Unary: {
        Value v = eval(*e.a, f);
        if (e.name == "not") return Value::boolean(!v.truthy());
        if (v.kind() == Value::Kind::Int) return Value::integer(e.name == "-" ? int_op("-", 0, v.as_int()) : v.as_int());
        if (v.is_number()) return Value::number(e.name == "-" ? -v.as_double() : v.as_double());
        error(e.pos, fmt::format("bad operand type for unary {}: {}", e.name, v.type_name()));
      }
      case Expr::Kind::Binary: return eval_binary(e, f);
      case Expr::Kind::Cond:
        if (eval(*e.b, f).truthy()) return eval(*e.a, f);
        return e.c ? eval(*e.c, f) : Value();
      case Expr::Kind::ListLit:
      case Expr::Kind::TupleLit: {
        ValueList items;
        for (const ExprPtr& a : e.args) items.push_back(eval(*a, f));
        return Value::list(std::move(items));
      }
      case Expr::Kind::DictLit: {
        Value d = Value::dict();
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          Value key = eval(*e.args[k], f);
          if (!key.is_string()) error(e.args[k]->pos, "dict literal keys must be strings");
          d.set(key.str(), eval(*e.args[k + 1], f));
        }
        return d;
      }
    }
    error(e.pos, "internal: unknown expression kind");
  }

  static std::string describe(const Expr& e) {
    if (e.kind == Expr::Kind::Name) return e.name;
    if (e.kind == Expr::Kind::Attr) return describe(*e.a) + "." + e.name;
    if (e.kind == Expr::Kind::Index && e.b->kind == Expr::Kind::Literal)
      return describe(*e.a) + "[" + e.b->value.repr() + "]";
    if (e.kind == Expr::Kind::Index) return describe(*e.a) + "[...]";
    return "expression";
  }

  std::pair<ValueList, Kwargs> eval_args(const Expr& e, Frame& f) {
    ValueList args;
    Kwargs kwargs;
    for (const ExprPtr& a : e.args) {
      args.push_back(eval(*a, f));
      charge(e.pos, args.back());
    }
    for (const auto& [k, a] : e.kwargs) {
      kwargs.emplace_back(k, eval(*a, f));
      charge(e.pos, kwargs.back().second);
    }
    return {std::move(args), std::move(kwargs)};
  }

  Value eval_index(const Expr& e, const Value& obj, const Value& key) {
    if (obj.is_undefined()) error(e.pos, fmt::format("'{}' is undefined (subscripted)", describe(*e.a)));
    if (obj.is_dict()) {
      if (!key.is_string()) return Value();
      const Value* v = obj.find(key.str());
      return v ? *v : Value();
    }
    if ((obj.is_list() || obj.is_string()) && key.kind() == Value::Kind::Int) {
      if (obj.is_list()) {
        auto n = int64_t(obj.items().size());
        int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
        return i >= 0 && i < n ? obj.items()[size_t(i)] : Value();  // out of range is undefined in Jinja
      }
      std::vector<char32_t> cps = utf8_to_code_points(obj.str());
      auto n = int64_t(cps.size());
      int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
      return i >= 0 && i < n ? Value::string(code_points_to_utf8({cps[size_t(i)]})) : Value();
    }
    return Value();
  }

  Value eval_call(const Expr& e, Frame& f) {
    auto [args, kwargs] = eval_args(e, f);
    if (e.a->kind == Expr::Kind::Attr) {
      Value obj = eval(*e.a->a, f);
      charge(e.pos, obj);
      if (obj.is_string() || obj.is_list() || (obj.is_dict() && !obj.is_namespace())) {
        bool unknown = false;
        Value r;
        try {
          r = builtin_method(obj, e.a->name, args, kwargs, unknown);
        } catch (const Error& err) {
          error(e.pos, fmt::format("{}.{}(): {}", obj.type_name(), e.a->name, err.what()));
        }
        if (unknown) {
          const Value* member = obj.find(e.a->name);  // a callable stored in a dict, e.g. a macro
          if (!member || !member->is_callable())
            error(e.pos, fmt::format("unsupported method '{}' on a {} value", e.a->name, obj.type_name()));
          return member->fn()(args, kwargs);
        }
        return r;
      }
    }
    Value callee = eval(*e.a, f);
    if (!callee.is_callable()) error(e.pos, fmt::format("'{}' is not callable ({})", describe(*e.a), callee.type_name()));
    return callee.fn()(args, kwargs);
  }

  Value eval_binary(const Expr& e, Frame& f) {
    const std::string& op = e.name;
    if (op == "and") {
      Value l = eval(*e.a, f);
      return l.truthy() ? eval(*e.b, f) : l;
    }
    if (op == "or") {
      Value l = eval(*e.a, f);
      return l.truthy() ? l : eval(*e.b, f);
    }
    Value l = eval(*e.a, f), r = eval(*e.b, f);
    charge(e.pos, l);
    charge(e.pos, r);
    if (op == "==") return Value::boolean(values_equal(l, r));
    if (op == "!=") return Value::boolean(!values_equal(l, r));
    if (op == "~") return Value::string(l.to_str() + r.to_str());
    if (op == "in" || op == "notin") {
      bool found = false;
      if (r.is_string()) {
        if (!l.is_string()) error(e.pos, fmt::format("'in <string>' requires a string on the left, got {}", l.type_name()));
        found = r.str().find(l.str()) != std::string::npos;
      } else if (r.is_dict()) {
        found = l.is_string() && r.find(l.str()) != nullptr;
      } else if (r.is_list()) {
        for (const Value& x : r.items()) found = found || values_equal(l, x);
      } else {
        error(e.pos, fmt::format("argument of type '{}' is not iterable (right side of 'in')", r.type_name()));
      }
      return Value::boolean(found == (op == "in"));
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      int c;
      if (l.is_number() && r.is_number()) c = l.as_double() < r.as_double() ? -1 : l.as_double() > r.as_double() ? 1 : 0;
      else if (l.is_string() && r.is_string()) c = l.str().compare(r.str());
      else error(e.pos, fmt::format("'{}' not supported between {} and {}", op, l.type_name(), r.type_name()));
      return Value::boolean(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
    }
    if (op == "+" && l.is_string() && r.is_string()) return Value::string(l.str() + r.str());
    if (op == "+" && l.is_list() && r.is_list()) {
      ValueList xs = l.items();
      xs.insert(xs.end(), r.items().begin(), r.items().end());
      return Value::list(std::move(xs));
    }
    if (op == "*" && l.is_string() && r.kind() == Value::Kind::Int) {
      const int64_t times = std::max<int64_t>(r.as_int(), 0);
      // Checked before building: 'a' * 2**62 must fail at once, not after exhausting memory.
      if (!l.str().empty() && uint64_t(times) > kMaxStringBytes / l.str().size())
        error(e.pos, fmt::format("string repetition of {} bytes x {} is over the {} byte limit", l.str().size(),
                                 times, kMaxStringBytes));
      std::string s;
      s.reserve(l.str().size() * size_t(times));
      for (int64_t k = 0; k < times && !l.str().empty(); ++k) s += l.str();
      return Value::string(std::move(s));
    }
    if (!l.is_number() || !r.is_number())
      error(e.pos, fmt::format("unsupported operand types for {}: {} and {}", op, l.type_name(), r.type_name()));
    bool ints = l.kind() == Value::Kind::Int && r.kind() == Value::Kind::Int;
    double a = l.as_double(), b = r.as_double();
    if ((op == "/" || op == "//" || op == "%") && b == 0) error(e.pos, "division by zero");
    try {
      if (ints && op != "/" && (op != "**" || r.as_int() >= 0)) return Value::integer(int_op(op, l.as_int(), r.as_int()));
    } catch (const Error& err) {
      error(e.pos, err.what());
    }
    if (op == "+") return Value::number(a + b);
    if (op == "-") return Value::number(a - b);
    if (op == "*") return Value::number(a * b);
    if (op == "/") return Value::number(a / b);
    if (op == "//") return Value::number(std::floor(a / b));
    if (op == "%") return Value::number(a - b * std::floor(a / b));  // Python: the sign of the divisor
    if (op == "**") return Value::number(std::pow(a, b));
    error(e.pos, fmt::format("unsupported operator '{}'", op));
  }

  const Template& t_;
  const RenderLimits lim_;
  Frame root_;
  int depth_ = 0;  // macro calls in progress
  int nest_ = 0;   // Nest frames in progress
  int64_t steps_ = 0, work_ = 0;
};

}  // namespace

std::string render(const Template& tmpl, const ValueDict& context, const RenderLimits& limits) {
  return Evaluator(tmpl, limits).run(context);
}

}  // namespace hlwq::jinja
