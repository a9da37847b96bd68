// Renders a parsed Jinja template (jinja_parser.h) against a context of top-level variables. Globals
// provided to every template: namespace(...), raise_exception(msg) (throws hlwq::Error carrying msg),
// range(...). Semantics follow Jinja2 as configured by transformers: undefined values print as "" and are
// falsy, attribute access on an undefined value is an error, `for` and macro bodies get their own scope
// (use a namespace to carry state out of a loop), and Python operators/methods keep Python semantics.
#pragma once
#include <string>

#include "runtime/jinja_ast.h"
#include "runtime/jinja_value.h"

namespace hlwq::jinja {

std::string render(const Template& tmpl, const ValueDict& context);

}  // namespace hlwq::jinja
