// Renders a parsed Jinja template (jinja_parser.h) against a context of top-level variables. Globals
// provided to every template: namespace(...), raise_exception(msg) (throws hlwq::Error carrying msg),
// range(...). Semantics follow Jinja2 as configured by transformers: undefined values print as "" and are
// falsy, attribute access on an undefined value is an error, `for` and macro bodies get their own scope
// (use a namespace to carry state out of a loop), and Python operators/methods keep Python semantics.
// Budgets (the template is untrusted): every statement and expression evaluated is a step, every byte or item
// an operator, filter, method or output touches is work, the rendered text is bounded, and the evaluator's
// recursion (nested expressions inside macro calls) is bounded so the stack cannot overflow. Exceeding any of
// them is an hlwq::Error naming the template, position and limit; integer arithmetic is checked 64-bit.
#pragma once
#include <cstdint>
#include <string>

#include "runtime/jinja_ast.h"
#include "runtime/jinja_value.h"

namespace hlwq::jinja {

struct RenderLimits {
  int64_t max_steps = 20'000'000;         // ~seconds of work; real chat templates take thousands per message
  int64_t max_work = int64_t(4) << 30;    // bytes/items touched by operators, filters, methods and output
  size_t max_output = kMaxStringBytes;    // bytes of rendered text (and of any {% set %} block capture)
  int max_recursion = 500;                // nested evaluation frames (expressions, statements, macro calls)
};

std::string render(const Template& tmpl, const ValueDict& context, const RenderLimits& limits = {});

}  // namespace hlwq::jinja
