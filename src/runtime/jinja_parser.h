// Lexer and recursive-descent parser for the Jinja subset (see jinja_ast.h). Whitespace handling matches the
// environment transformers uses for chat templates: trim_blocks=True, lstrip_blocks=True, `-` markers strip
// all adjacent whitespace, `+` markers disable lstrip, a single trailing newline of the template is dropped.
// Anything outside the subset is an hlwq::Error naming the construct, the origin and line/column.
#pragma once
#include <memory>
#include <string>

#include "runtime/jinja_ast.h"

namespace hlwq::jinja {

std::shared_ptr<const Template> parse_template(std::string source, const std::string& origin);

}  // namespace hlwq::jinja
