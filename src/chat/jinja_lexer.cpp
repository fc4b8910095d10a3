#include "chat/jinja_lexer.h"

#include <cmath>
#include <cstdlib>

#include "chat/jinja_pystr.h"
#include "chat/jinja_value.h"
#include "util/utf8.h"

namespace cvllm::jinja {

namespace {

[[noreturn]] void syntax_error(std::string message, int line) {
  throw JinjaError("TemplateSyntaxError", std::move(message), line);
}

int count_newlines(std::string_view s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

// jinja2 splits on \r\n, \r and \n, joins with \n, and drops one trailing newline.
std::string normalize_source(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

// Length of the run of Python whitespace (regex \s) starting at `pos`.
size_t whitespace_run(std::string_view s, size_t pos) {
  size_t end = pos;
  while (end < s.size()) {
    size_t next = end;
    char32_t c = utf8::decode(s, next);
    if (!py::is_space(c)) break;
    end = next;
  }
  return end - pos;
}

bool all_whitespace(std::string_view s) {
  return !s.empty() && whitespace_run(s, 0) == s.size();
}

// Python's str.rstrip() (whitespace).
std::string_view rstrip_whitespace(std::string_view s) {
  std::vector<size_t> offsets = py::char_offsets(s);
  size_t end = offsets.size() - 1;
  while (end > 0) {
    size_t pos = offsets[end - 1];
    if (!py::is_space(utf8::decode(s, pos))) break;
    --end;
  }
  return s.substr(0, offsets[end]);
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// Digits with single underscores between them ("1_000"); returns the end or `pos` on no match.
size_t digit_run(std::string_view s, size_t pos, bool (*ok)(char)) {
  if (pos >= s.size() || !ok(s[pos])) return pos;
  size_t end = pos + 1;
  while (end < s.size()) {
    if (ok(s[end])) {
      ++end;
    } else if (s[end] == '_' && end + 1 < s.size() && ok(s[end + 1])) {
      end += 2;
    } else {
      break;
    }
  }
  return end;
}

std::string strip_underscores(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c != '_') out += c;
  }
  return out;
}

// jinja2's float_re: digits, then a fraction and/or an exponent (not directly after a '.').
size_t match_float(std::string_view s, size_t pos) {
  if (pos > 0 && s[pos - 1] == '.') return 0;
  size_t end = digit_run(s, pos, is_digit);
  if (end == pos) return 0;
  size_t after_fraction = end;
  if (end < s.size() && s[end] == '.') {
    size_t frac_end = digit_run(s, end + 1, is_digit);
    if (frac_end > end + 1) after_fraction = frac_end;
  }
  size_t e = after_fraction;
  if (e < s.size() && (s[e] == 'e' || s[e] == 'E')) {
    size_t exp_start = e + 1;
    if (exp_start < s.size() && (s[exp_start] == '+' || s[exp_start] == '-')) ++exp_start;
    size_t exp_end = digit_run(s, exp_start, is_digit);
    if (exp_end > exp_start) return exp_end - pos;
  }
  return after_fraction > end ? after_fraction - pos : 0;
}

bool is_bin(char c) {
  return c == '0' || c == '1';
}
bool is_oct(char c) {
  return c >= '0' && c <= '7';
}
bool is_zero(char c) {
  return c == '0';
}

// jinja2's integer_re; sets `value`. Returns the match length or 0.
size_t match_integer(std::string_view s, size_t pos, int64_t& value, int line) {
  if (pos >= s.size() || !is_digit(s[pos])) return 0;
  auto parse = [&](std::string_view digits, int base) {
    std::string clean = strip_underscores(digits);
    errno = 0;
    unsigned long long v = std::strtoull(clean.c_str(), nullptr, base);
    if (errno == ERANGE || v > static_cast<unsigned long long>(INT64_MAX)) {
      syntax_error("integer literal too large", line);
    }
    value = static_cast<int64_t>(v);
  };
  if (s[pos] == '0' && pos + 1 < s.size()) {
    char p = static_cast<char>(s[pos + 1] | 0x20);
    bool (*ok)(char) = p == 'b' ? is_bin : p == 'o' ? is_oct : p == 'x' ? is_hex : nullptr;
    if (ok) {
      // Prefix digits may each be preceded by one underscore: 0x_ff, 0b1_0.
      size_t end = pos + 2;
      while (end < s.size()) {
        if (ok(s[end])) {
          ++end;
        } else if (s[end] == '_' && end + 1 < s.size() && ok(s[end + 1])) {
          end += 2;
        } else {
          break;
        }
      }
      if (end > pos + 2) {
        parse(s.substr(pos + 2, end - pos - 2), p == 'b' ? 2 : p == 'o' ? 8 : 16);
        return end - pos;
      }
    }
  }
  if (s[pos] == '0') {
    // 0(_?0)*
    size_t end = digit_run(s, pos, is_zero);
    value = 0;
    return end - pos;
  }
  size_t end = digit_run(s, pos, is_digit);
  parse(s.substr(pos, end - pos), 10);
  return end - pos;
}

bool is_name_start_byte(unsigned char c) {
  return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

size_t match_name(std::string_view s, size_t pos) {
  size_t end = pos;
  while (end < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[end]);
    if (c < 0x80) {
      if (!(is_name_start_byte(c) || is_digit(static_cast<char>(c)))) break;
      ++end;
      continue;
    }
    size_t next = end;
    char32_t cp = utf8::decode(s, next);
    if (!py::is_word(cp)) break;
    end = next;
  }
  return end - pos;
}

// Python's "unicode-escape" decoding of a string literal body.
std::string unescape(std::string_view body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) {
      out += c;
      continue;
    }
    char e = body[++i];
    switch (e) {
      case '\n':
        break;
      case '\\':
      case '\'':
      case '"':
        out += e;
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
      case 'u':
      case 'U': {
        size_t n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
        size_t j = i + 1;
        while (j < body.size() && j < i + 1 + n && is_hex(body[j])) ++j;
        if (j - (i + 1) != n) {
          syntax_error(e == 'x'   ? "truncated \\xXX escape"
                       : e == 'u' ? "truncated \\uXXXX escape"
                                  : "truncated \\UXXXXXXXX escape",
                       line);
        }
        uint32_t cp = static_cast<uint32_t>(
            std::strtoul(std::string(body.substr(i + 1, n)).c_str(), nullptr, 16));
        if (cp > 0x10FFFF) syntax_error("illegal Unicode character", line);
        utf8::append(out, cp);
        i = j - 1;
        break;
      }
      case 'N':
        syntax_error("\\N{...} escapes are not supported in chat templates", line);
      default:
        if (is_oct(e)) {
          uint32_t cp = e - '0';
          size_t j = i + 1;
          while (j < body.size() && j < i + 3 && is_oct(body[j])) cp = cp * 8 + (body[j++] - '0');
          utf8::append(out, cp);
          i = j - 1;
        } else {
          out += '\\';  // unknown escapes stay as written
          out += e;
        }
    }
  }
  return out;
}

// Length of a quoted string literal at `pos` (jinja2's string_re), or 0 when unterminated.
size_t match_string(std::string_view s, size_t pos) {
  char quote = s[pos];
  if (quote != '\'' && quote != '"') return 0;
  for (size_t i = pos + 1; i < s.size(); ++i) {
    if (s[i] == '\\') {
      ++i;
    } else if (s[i] == quote) {
      return i + 1 - pos;
    }
  }
  return 0;
}

const char* const kOperators[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/",
                                  "*",  "%",  "~",  "[",  "]",  "(",  ")", "{", "}",
                                  ">",  "<",  "=",  ".",  ":",  "|",  ",", ";"};

class Lexer {
 public:
  Lexer(std::string_view source, const LexerOptions& options)
      : src_(normalize_source(source)), opt_(options) {}

  std::vector<Token> run() {
    while (pos_ < src_.size()) lex_root();
    push(TokenType::kEof, "");
    return std::move(tokens_);
  }

 private:
  enum class Tag { kVariable, kBlock, kComment };

  void push(TokenType type, std::string value) {
    Token t;
    t.type = type;
    t.value = std::move(value);
    t.line = line_;
    tokens_.push_back(std::move(t));
  }

  // Applies `-`/lstrip_blocks to the text before a tag and emits it.
  void emit_text(std::string_view text, char sign, bool is_variable) {
    std::string_view kept = text;
    if (sign == '-') {
      kept = rstrip_whitespace(text);
    } else if (sign != '+' && opt_.lstrip_blocks && !is_variable) {
      size_t l_pos = text.rfind('\n');
      l_pos = l_pos == std::string_view::npos ? 0 : l_pos + 1;
      if ((l_pos > 0 || line_starting_) && all_whitespace(text.substr(l_pos))) {
        kept = text.substr(0, l_pos);
      }
    }
    if (!kept.empty()) push(TokenType::kData, std::string(kept));
    line_ += count_newlines(text);
  }

  // Finds the next "{{", "{%" or "{#" at or after pos_.
  size_t find_tag(Tag& tag) const {
    size_t p = pos_;
    while ((p = src_.find('{', p)) != std::string::npos && p + 1 < src_.size()) {
      char c = src_[p + 1];
      if (c == '{' || c == '%' || c == '#') {
        tag = c == '{' ? Tag::kVariable : c == '%' ? Tag::kBlock : Tag::kComment;
        return p;
      }
      ++p;
    }
    return std::string::npos;
  }

  // Matches `{%[-+]?\s*raw\s*(-%}\s*|%})` at p; returns its length or 0.
  size_t match_raw_begin(size_t p, char& sign) const {
    size_t i = p + 2;
    sign = (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ? src_[i++] : 0;
    i += whitespace_run(src_, i);
    if (src_.compare(i, 3, "raw") != 0) return 0;
    i += 3;
    i += whitespace_run(src_, i);
    if (src_.compare(i, 3, "-%}") == 0) return i + 3 + whitespace_run(src_, i + 3) - p;
    if (src_.compare(i, 2, "%}") == 0) return i + 2 - p;
    return 0;
  }

  void lex_root() {
    Tag tag;
    size_t p = find_tag(tag);
    if (p == std::string::npos) {
      push(TokenType::kData, src_.substr(pos_));
      line_ += count_newlines(std::string_view(src_).substr(pos_));
      pos_ = src_.size();
      return;
    }
    std::string_view text = std::string_view(src_).substr(pos_, p - pos_);
    char raw_sign = 0;
    size_t raw_len = tag == Tag::kBlock ? match_raw_begin(p, raw_sign) : 0;
    if (raw_len) {
      emit_text(text, raw_sign, false);
      line_ += count_newlines(std::string_view(src_).substr(p, raw_len));
      line_starting_ = src_[p + raw_len - 1] == '\n';
      pos_ = p + raw_len;
      lex_raw();
      return;
    }
    char sign =
        (p + 2 < src_.size() && (src_[p + 2] == '-' || src_[p + 2] == '+')) ? src_[p + 2] : 0;
    emit_text(text, sign, tag == Tag::kVariable);
    line_starting_ = false;
    pos_ = p + 2 + (sign ? 1 : 0);
    if (tag == Tag::kComment) {
      lex_comment();
    } else {
      push(tag == Tag::kVariable ? TokenType::kVariableBegin : TokenType::kBlockBegin, "");
      lex_tag(tag);
    }
  }

  void lex_comment() {
    for (size_t i = pos_; i + 1 < src_.size(); ++i) {
      size_t end = 0;
      if ((src_[i] == '+' || src_[i] == '-') && src_.compare(i + 1, 2, "#}") == 0) {
        end = i + 3;
        if (src_[i] == '-') end += whitespace_run(src_, end);
      } else if (src_.compare(i, 2, "#}") == 0) {
        end = i + 2;
        if (opt_.trim_blocks && end < src_.size() && src_[end] == '\n') ++end;
      } else {
        continue;
      }
      line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    syntax_error("Missing end of comment tag", line_);
  }

  void lex_raw() {
    for (size_t p = src_.find("{%", pos_); p != std::string::npos; p = src_.find("{%", p + 1)) {
      size_t i = p + 2;
      char sign = (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ? src_[i++] : 0;
      i += whitespace_run(src_, i);
      if (src_.compare(i, 6, "endraw") != 0) continue;
      i += 6;
      i += whitespace_run(src_, i);
      size_t end = match_block_end(i);
      if (!end) continue;
      emit_text(std::string_view(src_).substr(pos_, p - pos_), sign, false);
      line_ += count_newlines(std::string_view(src_).substr(p, end - p));
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    syntax_error("Missing end of raw directive", line_);
  }

  // Matches a block end at i (`+%}`, `-%}\s*`, `%}` + trim_blocks newline); returns end or 0.
  size_t match_block_end(size_t i) const {
    if (src_.compare(i, 3, "+%}") == 0) return i + 3;
    if (src_.compare(i, 3, "-%}") == 0) return i + 3 + whitespace_run(src_, i + 3);
    if (src_.compare(i, 2, "%}") == 0) {
      size_t end = i + 2;
      if (opt_.trim_blocks && end < src_.size() && src_[end] == '\n') ++end;
      return end;
    }
    return 0;
  }

  size_t match_variable_end(size_t i) const {
    if (src_.compare(i, 3, "-}}") == 0) return i + 3 + whitespace_run(src_, i + 3);
    if (src_.compare(i, 2, "}}") == 0) return i + 2;
    return 0;
  }

  void lex_tag(Tag tag) {
    std::vector<char> balance;
    while (pos_ < src_.size()) {
      if (balance.empty()) {
        size_t end = tag == Tag::kBlock ? match_block_end(pos_) : match_variable_end(pos_);
        if (end) {
          push(tag == Tag::kBlock ? TokenType::kBlockEnd : TokenType::kVariableEnd, "");
          line_ += count_newlines(std::string_view(src_).substr(pos_, end - pos_));
          line_starting_ = src_[end - 1] == '\n';
          pos_ = end;
          return;
        }
      }
      lex_tag_token(balance);
    }
    // End of input inside a tag: the parser reports what it expected.
  }

  void lex_tag_token(std::vector<char>& balance) {
    std::string_view s = src_;
    if (size_t ws = whitespace_run(s, pos_)) {
      line_ += count_newlines(s.substr(pos_, ws));
      line_starting_ = s[pos_ + ws - 1] == '\n';
      pos_ += ws;
      return;
    }
    line_starting_ = false;
    if (size_t n = match_float(s, pos_)) {
      Token t{TokenType::kFloat, std::string(s.substr(pos_, n)), 0, 0.0, line_};
      t.float_value = std::strtod(strip_underscores(t.value).c_str(), nullptr);
      tokens_.push_back(std::move(t));
      pos_ += n;
      return;
    }
    int64_t int_value = 0;
    if (size_t n = match_integer(s, pos_, int_value, line_)) {
      Token t{TokenType::kInteger, std::string(s.substr(pos_, n)), int_value, 0.0, line_};
      tokens_.push_back(std::move(t));
      pos_ += n;
      return;
    }
    if (is_name_start_byte(static_cast<unsigned char>(s[pos_]))) {
      if (size_t n = match_name(s, pos_)) {
        push(TokenType::kName, std::string(s.substr(pos_, n)));
        pos_ += n;
        return;
      }
    }
    if (size_t n = match_string(s, pos_)) {
      push(TokenType::kString, unescape(s.substr(pos_ + 1, n - 2), line_));
      line_ += count_newlines(s.substr(pos_, n));
      pos_ += n;
      return;
    }
    for (const char* op : kOperators) {
      size_t len = std::char_traits<char>::length(op);
      if (s.compare(pos_, len, op) != 0) continue;
      track_balance(op, balance);
      push(TokenType::kOperator, op);
      pos_ += len;
      return;
    }
    size_t next = pos_;
    utf8::decode(s, next);
    syntax_error("unexpected char " + string_repr(s.substr(pos_, next - pos_)) + " at " +
                     std::to_string(py::length(s.substr(0, pos_))),
                 line_);
  }

  void track_balance(std::string_view op, std::vector<char>& balance) {
    if (op == "{") {
      balance.push_back('}');
    } else if (op == "(") {
      balance.push_back(')');
    } else if (op == "[") {
      balance.push_back(']');
    } else if (op == "}" || op == ")" || op == "]") {
      if (balance.empty()) syntax_error("unexpected '" + std::string(op) + "'", line_);
      char expected = balance.back();
      balance.pop_back();
      if (expected != op[0]) {
        syntax_error("unexpected '" + std::string(op) + "', expected '" + expected + "'", line_);
      }
    }
  }

  std::string src_;
  LexerOptions opt_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, const LexerOptions& options) {
  return Lexer(source, options).run();
}

std::string describe_token(const Token& token) {
  switch (token.type) {
    case TokenType::kName:
      return token.value;
    case TokenType::kOperator:
      return token.value;
    case TokenType::kData:
      return "template data / text";
    case TokenType::kVariableBegin:
      return "begin of print statement";
    case TokenType::kVariableEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "begin of statement block";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kString:
      return "string";
    case TokenType::kInteger:
      return "integer";
    case TokenType::kFloat:
      return "float";
    case TokenType::kEof:
      return "end of template";
  }
  return "token";
}

}  // namespace cvllm::jinja
