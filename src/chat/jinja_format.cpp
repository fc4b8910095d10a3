// Python's two string formatting languages for the Jinja engine: printf-style `fmt % args` (and
// the `format` filter) and str.format with the format-spec mini-language.
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/jinja_builtins.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_pystr.h"

namespace cvllm::jinja {

// ---------------------------------------------------------------------------------------------
// printf-style formatting: "%s" % x

namespace {

struct FormatSpec {
  bool left = false, plus = false, space = false, alt = false, zero = false;
  int width = -1, precision = -1;
};

std::string pad_to_width(const std::string& body, const FormatSpec& spec, bool numeric) {
  int64_t len = static_cast<int64_t>(py::length(body));
  if (spec.width <= len) return body;
  std::string fill(static_cast<size_t>(spec.width - len), ' ');
  if (spec.left) return body + fill;
  if (spec.zero && numeric) {
    size_t sign_len =
        (!body.empty() && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) ? 1 : 0;
    if (body.size() > sign_len + 1 && body[sign_len] == '0' &&
        (body[sign_len + 1] == 'x' || body[sign_len + 1] == 'X' || body[sign_len + 1] == 'o')) {
      sign_len += 2;
    }
    return body.substr(0, sign_len) + std::string(fill.size(), '0') + body.substr(sign_len);
  }
  return fill + body;
}

std::string format_int(int64_t v, char conv, const FormatSpec& spec) {
  uint64_t mag = v < 0 ? 0 - static_cast<uint64_t>(v) : static_cast<uint64_t>(v);
  char buf[80];
  const char* fmt = conv == 'x' ? "%llx" : conv == 'X' ? "%llX" : conv == 'o' ? "%llo" : "%llu";
  std::snprintf(buf, sizeof(buf), fmt, static_cast<unsigned long long>(mag));
  std::string digits = buf;
  if (spec.precision >= 0 && static_cast<int>(digits.size()) < spec.precision) {
    digits = std::string(spec.precision - digits.size(), '0') + digits;
  }
  if (spec.alt && conv != 'd') digits = (conv == 'o' ? "0o" : conv == 'x' ? "0x" : "0X") + digits;
  std::string sign = v < 0 ? "-" : spec.plus ? "+" : spec.space ? " " : "";
  return sign + digits;
}

std::string format_float(double v, char conv, const FormatSpec& spec) {
  int precision = spec.precision < 0 ? 6 : spec.precision;
  if (std::isinf(v) || std::isnan(v)) {
    std::string body = std::isnan(v) ? "nan" : "inf";
    if (conv == 'F' || conv == 'E' || conv == 'G') body = py::upper(body);
    std::string sign = (v < 0 && !std::isnan(v)) ? "-" : spec.plus ? "+" : spec.space ? " " : "";
    return sign + body;
  }
  std::string fmt = "%";
  if (spec.plus) fmt += '+';
  if (spec.space) fmt += ' ';
  if (spec.alt) fmt += '#';
  fmt += "." + std::to_string(precision) + conv;
  char small[128];
  int n = std::snprintf(small, sizeof(small), fmt.c_str(), v);
  if (n < static_cast<int>(sizeof(small))) return small;
  std::string big(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(big.data(), big.size(), fmt.c_str(), v);
  big.resize(static_cast<size_t>(n));
  return big;
}

double as_number(const Value& v, char conv) {
  if (v.is_number()) return v.as_float();
  throw_type_error(std::string("must be real number, not ") + v.type_name());
}

std::string format_one(char conv, const FormatSpec& spec, const Value& v) {
  switch (conv) {
    case 's':
      return pad_to_width(spec.precision >= 0 ? py::slice(v.str(), 0, spec.precision, 1) : v.str(),
                          spec, false);
    case 'r':
    case 'a':
      return pad_to_width(
          spec.precision >= 0 ? py::slice(v.repr(), 0, spec.precision, 1) : v.repr(), spec, false);
    case 'd':
    case 'i':
    case 'u':
      if (!v.is_number()) {
        throw_type_error(std::string("%") + conv + " format: a real number is required, not " +
                         v.type_name());
      }
      return pad_to_width(format_int(v.is_float() ? to_python_int(v) : v.as_int(), 'd', spec), spec,
                          true);
    case 'x':
    case 'X':
    case 'o':
      if (!v.is_integral()) {
        throw_type_error(std::string("%") + conv + " format: an integer is required, not " +
                         v.type_name());
      }
      return pad_to_width(format_int(v.as_int(), conv, spec), spec, true);
    case 'e':
    case 'E':
    case 'f':
    case 'F':
    case 'g':
    case 'G':
      return pad_to_width(format_float(as_number(v, conv), conv, spec), spec, true);
    case 'c': {
      std::string c;
      if (v.is_integral()) {
        py::append_utf8(c, static_cast<char32_t>(v.as_int()));
      } else if (v.is_string() && py::length(v.as_string()) == 1) {
        c = v.as_string();
      } else {
        throw_type_error("%c requires int or char");
      }
      return pad_to_width(c, spec, false);
    }
    default:
      throw_error("ValueError", std::string("unsupported format character '") + conv + "'");
  }
}

}  // namespace

namespace {

// One pass over a printf-style format string, consuming arguments as conversions ask for them.
class PercentFormatter {
 public:
  PercentFormatter(const std::string& fmt, const Value& args) : fmt_(fmt) {
    if (args.is_tuple()) {
      positional_ = args.items();
    } else {
      positional_.push_back(args);
      if (args.is_dict()) mapping_ = &args.dict();
      // Python takes any subscriptable argument (dict, list) as a mapping, which excuses unused
      // arguments.
      mapping_like_ = args.is_dict() || args.is_list() || args.is_undefined();
    }
  }

  std::string run() {
    std::string out;
    for (i_ = 0; i_ < fmt_.size(); ++i_) {
      if (fmt_[i_] != '%') {
        out += fmt_[i_];
        continue;
      }
      if (++i_ >= fmt_.size()) throw_error("ValueError", "incomplete format");
      std::optional<Value> keyed = parse_key();
      FormatSpec spec = parse_spec();
      char conv = fmt_[i_];
      if (conv == '%') {
        out += '%';
        continue;
      }
      out += format_one(conv, spec, keyed ? *keyed : take());
    }
    bool single_mapping = mapping_like_ && positional_.size() == 1;
    if (!used_mapping_ && next_arg_ < positional_.size() && !single_mapping) {
      throw_type_error("not all arguments converted during string formatting");
    }
    return out;
  }

 private:
  const Value& take() {
    if (next_arg_ >= positional_.size()) {
      throw_type_error("not enough arguments for format string");
    }
    return positional_[next_arg_++];
  }

  // "%(name)s": the value comes from the mapping argument.
  std::optional<Value> parse_key() {
    if (fmt_[i_] != '(') return std::nullopt;
    size_t close = fmt_.find(')', i_);
    if (close == std::string::npos) throw_error("ValueError", "incomplete format key");
    if (positional_.size() == 1 && positional_[0].is_undefined()) positional_[0].fail_undefined();
    if (!mapping_) throw_type_error("format requires a mapping");
    std::string key = fmt_.substr(i_ + 1, close - i_ - 1);
    const Value* v = mapping_->find(std::string_view(key));
    if (!v) throw_error("KeyError", string_repr(key));
    used_mapping_ = true;
    i_ = close + 1;
    return *v;
  }

  // Flags, width, precision and length modifiers; leaves i_ on the conversion character.
  FormatSpec parse_spec() {
    FormatSpec spec;
    for (; i_ < fmt_.size(); ++i_) {
      char f = fmt_[i_];
      if (f == '-') {
        spec.left = true;
      } else if (f == '+') {
        spec.plus = true;
      } else if (f == ' ') {
        spec.space = true;
      } else if (f == '#') {
        spec.alt = true;
      } else if (f == '0') {
        spec.zero = true;
      } else {
        break;
      }
    }
    spec.width = read_number();
    if (spec.width < -1) {
      spec.left = true;
      spec.width = -spec.width;
    }
    if (i_ < fmt_.size() && fmt_[i_] == '.') {
      ++i_;
      spec.precision = std::max(read_number(), 0);
    }
    while (i_ < fmt_.size() && (fmt_[i_] == 'h' || fmt_[i_] == 'l' || fmt_[i_] == 'L')) ++i_;
    if (i_ >= fmt_.size()) throw_error("ValueError", "incomplete format");
    return spec;
  }

  // Digits, or '*' for a number taken from the arguments; -1 when absent.
  int read_number() {
    int64_t v = -1;
    if (i_ < fmt_.size() && fmt_[i_] == '*') {
      ++i_;
      v = expect_int(take(), "* wants int");
    } else {
      while (i_ < fmt_.size() && isdigit(static_cast<unsigned char>(fmt_[i_]))) {
        v = (v < 0 ? 0 : v) * 10 + (fmt_[i_++] - '0');
        if (v > 1000000) break;
      }
    }
    if (v > 1000000 || v < -1000000) throw_error("ValueError", "width too big");
    return static_cast<int>(v);
  }

  const std::string& fmt_;
  ValueList positional_;
  const Dict* mapping_ = nullptr;
  size_t next_arg_ = 0;
  size_t i_ = 0;
  bool used_mapping_ = false;
  bool mapping_like_ = false;
};

}  // namespace

std::string percent_format(const std::string& fmt, const Value& args) {
  return PercentFormatter(fmt, args).run();
}

// ---------------------------------------------------------------------------------------------
// str.format

namespace {

struct StdSpec {
  std::string fill = " ";
  char align = 0, sign = '-';
  bool alt = false, zero = false;
  int64_t width = -1, precision = -1;
  char grouping = 0, type = 0;
};

StdSpec parse_std_spec(const std::string& spec) {
  StdSpec s;
  std::vector<std::string> c = py::chars(spec);
  size_t i = 0;
  auto is_align = [](const std::string& x) { return x == "<" || x == ">" || x == "^" || x == "="; };
  if (c.size() >= 2 && is_align(c[1])) {
    s.fill = c[0];
    s.align = c[1][0];
    i = 2;
  } else if (!c.empty() && is_align(c[0])) {
    s.align = c[0][0];
    i = 1;
  }
  if (i < c.size() && (c[i] == "+" || c[i] == "-" || c[i] == " ")) s.sign = c[i++][0];
  if (i < c.size() && c[i] == "#") {
    s.alt = true;
    ++i;
  }
  if (i < c.size() && c[i] == "0") {
    s.zero = true;
    ++i;
  }
  auto digits = [&](int64_t& target) {
    int64_t v = -1;
    while (i < c.size() && c[i].size() == 1 && isdigit(static_cast<unsigned char>(c[i][0]))) {
      v = (v < 0 ? 0 : v) * 10 + (c[i++][0] - '0');
      if (v > 1000000) throw_error("ValueError", "Too many decimal digits in format string");
    }
    target = v;
  };
  digits(s.width);
  if (i < c.size() && (c[i] == "," || c[i] == "_")) s.grouping = c[i++][0];
  if (i < c.size() && c[i] == ".") {
    ++i;
    digits(s.precision);
    if (s.precision < 0) throw_error("ValueError", "Format specifier missing precision");
  }
  if (i < c.size() && c[i].size() == 1) s.type = c[i++][0];
  if (i != c.size()) throw_error("ValueError", "Invalid format specifier '" + spec + "'");
  return s;
}

std::string group_digits(const std::string& digits, char sep) {
  std::string out;
  int count = 0;
  for (size_t i = digits.size(); i > 0; --i) {
    if (count == 3) {
      out += sep;
      count = 0;
    }
    out += digits[i - 1];
    ++count;
  }
  return std::string(out.rbegin(), out.rend());
}

[[noreturn]] void unknown_code(char type, const Value& v) {
  throw_error("ValueError", std::string("Unknown format code '") + type + "' for object of type '" +
                                v.type_name() + "'");
}

// The digits of an int under format type d/n/x/X/o/b/c (without the sign).
std::string format_std_int(int64_t i, const StdSpec& s, char type) {
  uint64_t mag = i < 0 ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i);
  std::string body;
  if (type == 'b') {
    do {
      body.insert(body.begin(), static_cast<char>('0' + (mag & 1)));
      mag >>= 1;
    } while (mag);
  } else if (type == 'c') {
    py::append_utf8(body, static_cast<char32_t>(i));
    return body;
  } else {
    body = format_int(static_cast<int64_t>(mag), type == 'n' ? 'd' : type, FormatSpec());
  }
  if (s.grouping && (type == 'd' || type == 'n')) body = group_digits(body, s.grouping);
  if (s.alt && type != 'd' && type != 'n') body = std::string("0") + type + body;
  return body;
}

// The digits of a float under format type e/E/f/F/g/G/% or none (without the sign).
std::string format_std_float(double f, const StdSpec& s, char type, const Value& v) {
  std::string body;
  FormatSpec fs;
  fs.alt = s.alt;
  if (!type) {
    // Python's default float format: repr, or 'g' semantics with the given precision.
    if (s.precision < 0) {
      body = float_repr(std::fabs(f));
    } else {
      fs.precision = static_cast<int>(s.precision == 0 ? 1 : s.precision);
      body = format_float(std::fabs(f), 'g', fs);
    }
  } else if (std::string("eEfFgG%").find(type) != std::string::npos) {
    fs.precision = static_cast<int>(s.precision);
    double x = type == '%' ? std::fabs(f) * 100 : std::fabs(f);
    body = format_float(x, type == '%' ? 'f' : type, fs);
    if (type == '%') body += '%';
  } else {
    unknown_code(type, v);
  }
  if (s.grouping) {
    size_t dot = body.find_first_not_of("0123456789");
    body = group_digits(body.substr(0, dot), s.grouping) +
           (dot == std::string::npos ? "" : body.substr(dot));
  }
  return body;
}

std::string apply_std_spec(const Value& v, const std::string& spec_text) {
  StdSpec s = parse_std_spec(spec_text);
  std::string body, sign;
  bool numeric = v.is_number() && s.type != 's';
  if (numeric) {
    char type = s.type ? s.type : (v.is_float() ? 0 : 'd');
    bool int_type = std::string("dxXobnc").find(type) != std::string::npos && type != 0;
    if (v.is_integral() && int_type) {
      body = format_std_int(v.as_int(), s, type);
      numeric = type != 'c';
      if (v.as_int() < 0) sign = "-";
    } else {
      body = format_std_float(v.as_float(), s, type, v);
      if (std::signbit(v.as_float()) && !std::isnan(v.as_float())) sign = "-";
    }
    if (sign.empty() && s.sign != '-') sign = std::string(1, s.sign);
  } else {
    if (s.type && s.type != 's') unknown_code(s.type, v);
    body = v.str();
    if (s.precision >= 0) body = py::slice(body, 0, s.precision, 1);
  }
  char align = s.align ? s.align : (s.zero && numeric ? '=' : (numeric ? '>' : '<'));
  std::string fill = s.align ? s.fill : (s.zero && numeric ? "0" : s.fill);
  int64_t len = static_cast<int64_t>(py::length(sign) + py::length(body));
  if (s.width <= len) return sign + body;
  int64_t total = s.width - len;
  auto repeat_fill = [&](int64_t n) {
    std::string r;
    for (int64_t k = 0; k < n; ++k) r += fill;
    return r;
  };
  if (align == '=') return sign + repeat_fill(total) + body;
  if (align == '<') return sign + body + repeat_fill(total);
  if (align == '>') return repeat_fill(total) + sign + body;
  return repeat_fill(total / 2) + sign + body + repeat_fill(total - total / 2);
}

}  // namespace

namespace {

// The value a replacement field names: "", "0", "name", then ".attr" / "[key]" parts looked up
// through the sandbox's rules.
Value resolve_field(const std::string& field, const CallArgs& args, size_t& auto_index) {
  size_t end = field.find_first_of(".[");
  std::string head = field.substr(0, end);
  Value value;
  if (head.empty() || isdigit(static_cast<unsigned char>(head[0]))) {
    size_t idx =
        head.empty() ? auto_index++ : static_cast<size_t>(std::strtoull(head.c_str(), nullptr, 10));
    if (idx >= args.args.size()) {
      throw_error("IndexError", "Replacement index " + std::to_string(idx) +
                                    " out of range for positional args tuple");
    }
    value = args.args[idx];
  } else {
    bool found = false;
    for (const auto& [k, v] : args.kwargs) {
      if (k == head) {
        value = v;
        found = true;
      }
    }
    if (!found) throw_error("KeyError", string_repr(head));
  }
  for (size_t p = end; p != std::string::npos && p < field.size();) {
    if (field[p] == '.') {
      size_t q = field.find_first_of(".[", p + 1);
      value = get_attr(value,
                       field.substr(p + 1, q == std::string::npos ? std::string::npos : q - p - 1));
      p = q;
      continue;
    }
    size_t q = field.find(']', p);
    if (q == std::string::npos) throw_error("ValueError", "Missing ']' in format string");
    std::string key = field.substr(p + 1, q - p - 1);
    bool numeric = !key.empty() && key.find_first_not_of("0123456789") == std::string::npos;
    value = get_item(
        value,
        numeric ? Value(static_cast<int64_t>(std::strtoll(key.c_str(), nullptr, 10))) : Value(key));
    p = q + 1;
  }
  if (value.is_undefined() && !value.undefined_hint().empty()) value.fail_undefined();
  return value;
}

std::string format_with_depth(Interpreter& interp, const std::string& fmt, const CallArgs& args,
                              size_t& auto_index, int depth) {
  if (depth > 2) throw_error("ValueError", "Max string recursion exceeded");
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    bool doubled = i + 1 < fmt.size() && fmt[i + 1] == c;
    if ((c == '{' || c == '}') && doubled) {
      out += c;
      ++i;
      continue;
    }
    if (c == '}') throw_error("ValueError", "Single '}' encountered in format string");
    if (c != '{') {
      out += c;
      continue;
    }
    size_t nesting = 1, j = i + 1;
    for (; j < fmt.size() && nesting; ++j) {
      if (fmt[j] == '{') ++nesting;
      if (fmt[j] == '}') --nesting;
    }
    if (nesting) throw_error("ValueError", "Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, j - i - 2), spec, conv;
    i = j - 1;
    if (size_t colon = field.find(':'); colon != std::string::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    if (size_t bang = field.find('!'); bang != std::string::npos) {
      conv = field.substr(bang + 1);
      field = field.substr(0, bang);
    }
    Value value = resolve_field(field, args, auto_index);
    if (conv == "r" || conv == "a") {
      value = Value(value.repr());
    } else if (conv == "s") {
      value = Value(value.str());
    } else if (!conv.empty()) {
      throw_error("ValueError", "Unknown conversion specifier " + conv);
    }
    if (spec.find('{') != std::string::npos)
      spec = format_with_depth(interp, spec, args, auto_index, depth + 1);
    out += apply_std_spec(value, spec);
    interp.check_size(out.size());
  }
  return out;
}

}  // namespace

std::string str_format(Interpreter& interp, const std::string& fmt, const CallArgs& args) {
  size_t auto_index = 0;
  return format_with_depth(interp, fmt, args, auto_index, 1);
}

}  // namespace cvllm::jinja
