// Built-in filters, tests and Python methods (str/dict/list) of the Jinja subset. Each function throws
// hlwq::Error with a message naming the filter/test/method and the offending types; the evaluator prefixes
// the template position. `unknown` is set (and no error thrown) when a name is not supported, so the
// evaluator can report it as an unsupported construct at the right position.
#pragma once
#include <string>

#include "runtime/jinja_value.h"

namespace hlwq::jinja {

Value builtin_filter(const std::string& name, const Value& v, const ValueList& args, const Kwargs& kwargs,
                     bool& unknown);
bool builtin_test(const std::string& name, const Value& v, const ValueList& args, bool& unknown);
Value builtin_method(const Value& obj, const std::string& name, const ValueList& args, const Kwargs& kwargs,
                     bool& unknown);
// Python-style container iteration: list items, dict keys, string characters; undefined iterates as empty.
ValueList iterate(const Value& v);

}  // namespace hlwq::jinja
