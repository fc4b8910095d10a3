// Jinja parser: tokens -> TemplateAst, with jinja2's grammar and precedence (filters and tests
// bind to the unary operand; `not x is y` is `not (x is y)`; `a ~ b + c` is `a ~ (b + c)`), its
// statements (if/for/set/macro/call/filter/with/raw, loop controls, transformers' `{% generation
// %}`) and its syntax error messages. Unknown filter and test names are errors here, except inside
// `if` statements and conditional expressions where jinja2 defers them to run time.
#pragma once

#include <memory>
#include <string_view>

#include "chat/jinja_ast.h"
#include "chat/jinja_lexer.h"

namespace cvllm::jinja {

struct ParserOptions {
  LexerOptions lexer;
  int max_nesting_depth = 256;  // nested blocks + expressions; bounds recursion
};

// Throws JinjaError("TemplateSyntaxError" / "TemplateAssertionError", message, line).
std::unique_ptr<TemplateAst> parse_template(std::string_view source, const ParserOptions& options);

}  // namespace cvllm::jinja
