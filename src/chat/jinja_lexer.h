// Jinja lexer: template text -> tokens, following jinja2's lexer rule for rule so that whitespace
// comes out byte-identical: `{{ }}`, `{% %}`, `{# #}`, `{% raw %}`; `-` strips all whitespace on
// that side of a tag, `+` keeps it; trim_blocks drops the first newline after a block or comment
// tag; lstrip_blocks drops spaces and tabs from the start of a line up to a block or comment tag;
// newlines are normalized to "\n" and one trailing newline of the template is dropped (jinja2's
// keep_trailing_newline=False).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace cvllm::jinja {

enum class TokenType : uint8_t {
  kData,
  kVariableBegin,
  kVariableEnd,
  kBlockBegin,
  kBlockEnd,
  kName,
  kString,
  kInteger,
  kFloat,
  kOperator,
  kEof,
};

struct Token {
  TokenType type;
  std::string value;  // text of data/name/string/operator tokens (strings already unescaped)
  int64_t int_value = 0;
  double float_value = 0.0;
  int line = 1;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws JinjaError("TemplateSyntaxError", ...) with the line set.
std::vector<Token> tokenize(std::string_view source, const LexerOptions& options);

// The name jinja2 uses for a token in syntax errors ("end of print statement", "'}'", ...).
std::string describe_token(const Token& token);

}  // namespace cvllm::jinja
