// Syntax tree of the Jinja subset, produced by jinja_parser and walked by jinja_eval. Every node keeps the
// byte offset of its source so that runtime errors can name line and column. Supported statements:
// text, {{ expr }}, if/elif/else, for (tuple targets, `if` filter, else, loop.*), set (name, ns.attr,
// block form), macro, break/continue, generation (transformers' assistant-mask block, rendered as is).
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/jinja_value.h"

namespace hlwq::jinja {

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    Literal,    // value
    Name,       // name
    Attr,       // a.name
    Index,      // a[b]
    Slice,      // a[b:c:d] (b/c/d optional)
    Call,       // a(args, kwargs)
    Filter,     // a | name(args, kwargs)
    Test,       // a is [not] name(args)
    Unary,      // op a   ("not", "-", "+")
    Binary,     // a op b (and or == != < > <= >= in notin + - * / // % ** ~)
    Cond,       // a if b else c
    ListLit,    // [args...]
    TupleLit,   // (args...)
    DictLit,    // {kwargs-like pairs of args}
  };
  Kind kind;
  size_t pos = 0;
  Value value;
  std::string name;  // Name/Attr/Filter/Test identifier, Unary/Binary operator
  bool negated = false;
  ExprPtr a, b, c;
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  enum class Kind { Text, Output, If, For, Set, SetBlock, Macro, Break, Continue, Block };
  Kind kind;
  size_t pos = 0;
  std::string text;                 // Text
  ExprPtr expr;                     // Output; For iterable; Set value
  ExprPtr filter;                   // For `if` clause
  std::vector<std::string> names;   // For targets; Set: {name} or {namespace, attr}; Macro: {name}; SetBlock: {name}
  std::vector<std::pair<ExprPtr, Body>> branches;  // If: (cond, body)...
  Body body;                        // For / Macro / SetBlock / Block body
  Body else_body;                   // If else; For else
  std::vector<std::pair<std::string, ExprPtr>> params;  // Macro parameters with optional defaults
};

struct Template {
  std::string origin;  // for error messages
  std::string source;
  Body body;
};

// "line L, column C" for a byte offset into source.
std::string jinja_position(const std::string& source, size_t pos);

}  // namespace hlwq::jinja
