// Python methods of str/dict/list/tuple values that templates call, argument binding and Python's
// int()/float() conversions.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "chat/jinja_builtins.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_pystr.h"

namespace cvllm::jinja {

// ---------------------------------------------------------------------------------------------
// Argument binding and conversions

BoundArgs bind_args(const char* fn, const CallArgs& args, std::initializer_list<const char*> names,
                    size_t num_required) {
  BoundArgs out;
  size_t n = names.size();
  out.values.resize(n);
  out.given.assign(n, false);
  if (args.args.size() > n) {
    throw_type_error(std::string(fn) + "() takes at most " + std::to_string(n) + " argument(s) (" +
                     std::to_string(args.args.size()) + " given)");
  }
  for (size_t i = 0; i < args.args.size(); ++i) {
    out.values[i] = args.args[i];
    out.given[i] = true;
  }
  for (const auto& [key, value] : args.kwargs) {
    size_t i = 0;
    for (const char* name : names) {
      if (key == name) break;
      ++i;
    }
    if (i == n)
      throw_type_error(std::string(fn) + "() got an unexpected keyword argument '" + key + "'");
    if (out.given[i])
      throw_type_error(std::string(fn) + "() got multiple values for argument '" + key + "'");
    out.values[i] = value;
    out.given[i] = true;
  }
  for (size_t i = 0; i < num_required; ++i) {
    if (!out.given[i]) {
      throw_type_error(std::string(fn) + "() missing required argument: '" + *(names.begin() + i) +
                       "'");
    }
  }
  return out;
}

int64_t expect_int(const Value& v, const char* what) {
  if (v.is_integral()) return v.as_int();
  throw_type_error(std::string("'") + v.type_name() +
                   "' object cannot be interpreted as an integer" +
                   (what ? std::string(" (") + what + ")" : std::string()));
}

namespace {

// Python int(str, base) for base 10 or 0/2/8/16 (underscores and a sign allowed).
std::optional<int64_t> parse_int(std::string_view text, int base) {
  std::optional<std::string> number = py::number_text(py::strip_whitespace_view(text));
  if (!number || number->empty()) return std::nullopt;
  const std::string& s = *number;
  size_t i = 0;
  bool negative = false;
  if (s[i] == '+' || s[i] == '-') negative = s[i++] == '-';
  if ((base == 0 || base == 16 || base == 8 || base == 2) && i + 1 < s.size() && s[i] == '0') {
    char p = static_cast<char>(s[i + 1] | 0x20);
    int prefix_base = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (prefix_base && (base == 0 || base == prefix_base)) {
      base = prefix_base;
      i += 2;
      if (i < s.size() && s[i] == '_') ++i;
    }
  }
  if (base == 0) base = 10;
  if (i >= s.size()) return std::nullopt;
  int64_t value = 0;
  bool last_underscore = true;  // no leading underscore
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      if (last_underscore) return std::nullopt;
      last_underscore = true;
      continue;
    }
    int d = (c >= '0' && c <= '9')                   ? c - '0'
            : (c | 0x20) >= 'a' && (c | 0x20) <= 'z' ? (c | 0x20) - 'a' + 10
                                                     : 99;
    if (d >= base) return std::nullopt;
    if (__builtin_mul_overflow(value, base, &value) || __builtin_add_overflow(value, d, &value)) {
      return std::nullopt;
    }
    last_underscore = false;
  }
  if (last_underscore) return std::nullopt;
  return negative ? -value : value;
}

}  // namespace

std::optional<double> parse_python_float(std::string_view text) {
  std::optional<std::string> number = py::number_text(py::strip_whitespace_view(text));
  if (!number || number->empty()) return std::nullopt;
  const std::string& s = *number;
  size_t lead = (s[0] == '+' || s[0] == '-') ? 1 : 0;
  double sign = s[0] == '-' ? -1.0 : 1.0;
  if (s.size() - lead <= 8) {
    std::string word = py::lower(std::string_view(s).substr(lead));
    if (word == "inf" || word == "infinity") return sign * INFINITY;
    if (word == "nan") return NAN;
  }
  // One pass that stops at the first character a float cannot have (long strings are common
  // here: |int and |float of rendered text).
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '_') {
      bool between_digits = i > 0 && i + 1 < s.size() &&
                            isdigit(static_cast<unsigned char>(s[i - 1])) &&
                            isdigit(static_cast<unsigned char>(s[i + 1]));
      if (!between_digits) return std::nullopt;
      continue;
    }
    bool ok = isdigit(static_cast<unsigned char>(c)) || c == '.' || c == 'e' || c == 'E' ||
              c == '+' || c == '-';
    if (!ok) return std::nullopt;
    clean += c;
  }
  char* end = nullptr;
  double v = std::strtod(clean.c_str(), &end);
  if (clean.empty() || end != clean.c_str() + clean.size()) return std::nullopt;
  return v;
}

int64_t to_python_int(const Value& v) {
  if (v.is_integral()) return v.as_int();
  if (v.is_float()) {
    double f = v.as_float();
    if (std::isnan(f)) throw_error("ValueError", "cannot convert float NaN to integer");
    if (std::isinf(f)) throw_error("OverflowError", "cannot convert float infinity to integer");
    if (f >= 9.2233720368547758e18 || f < -9.2233720368547758e18) {
      throw_error("OverflowError", "integer overflow: template integers are limited to 64 bits");
    }
    return static_cast<int64_t>(f);
  }
  if (v.is_string()) {
    if (std::optional<int64_t> i = parse_int(v.as_string(), 10)) return *i;
    throw_error("ValueError", "invalid literal for int() with base 10: " + v.repr());
  }
  throw_type_error(
      std::string("int() argument must be a string, a bytes-like object or a real number, not '") +
      v.type_name() + "'");
}

std::optional<int64_t> parse_python_int(std::string_view text, int base) {
  return parse_int(text, base);
}

// ---------------------------------------------------------------------------------------------
// Methods

namespace {

class BoundMethod : public Callable {
 public:
  BoundMethod(Value self, std::string name) : self_(std::move(self)), name_(std::move(name)) {}
  Value call(Interpreter& interp, CallArgs& args) override;
  std::string repr() const override {
    return "<built-in method " + name_ + " of " + self_.type_name() + " object>";
  }
  const char* type_name() const override { return "builtin_function_or_method"; }

 private:
  Value call_str(Interpreter& interp, CallArgs& args);
  std::optional<Value> call_str_search(Interpreter& interp, CallArgs& args);
  std::optional<Value> call_str_reshape(Interpreter& interp, CallArgs& args);
  Value call_container(Interpreter& interp, CallArgs& args);
  Value self_;
  std::string name_;
};

bool in_list(const std::string& name, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    if (name == n) return true;
  }
  return false;
}

const std::initializer_list<const char*> kStrMethods = {
    "capitalize",   "casefold", "center",    "count",      "endswith",   "find",
    "format",       "index",    "isalnum",   "isalpha",    "isascii",    "isdecimal",
    "isdigit",      "islower",  "isnumeric", "isspace",    "istitle",    "isupper",
    "join",         "ljust",    "lower",     "lstrip",     "partition",  "removeprefix",
    "removesuffix", "replace",  "rfind",     "rindex",     "rjust",      "rpartition",
    "rsplit",       "rstrip",   "split",     "splitlines", "startswith", "strip",
    "swapcase",     "title",    "upper",     "zfill"};

std::optional<std::string> opt_string(const Value& v, const char* fn) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  if (!v.is_string()) throw_type_error(std::string(fn) + " arg must be None or str");
  return v.as_string();
}

std::optional<int64_t> opt_index(const Value& v) {
  if (v.is_undefined() || v.is_none()) return std::nullopt;
  return expect_int(v, nullptr);
}

const std::string& str_arg(const Value& v, const char* fn) {
  if (!v.is_string()) {
    throw_type_error(std::string(fn) + "() argument must be str, not " + v.type_name());
  }
  return v.as_string();
}

Value string_list(std::vector<std::string> parts) {
  ValueList items;
  items.reserve(parts.size());
  for (std::string& p : parts) items.emplace_back(std::move(p));
  return Value::list(std::move(items));
}

bool affix_match(const std::string& s, const Value& affix, const BoundArgs& b, bool prefix,
                 const char* fn) {
  std::vector<size_t> offsets = py::char_offsets(s);
  int64_t len = static_cast<int64_t>(offsets.size()) - 1;
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v < 0 ? *v + len : *v;
    return std::clamp<int64_t>(x, 0, len);
  };
  int64_t a = clamp(opt_index(b[1]), 0), e = clamp(opt_index(b[2]), len);
  if (a > e) return false;
  std::string_view window = std::string_view(s).substr(offsets[a], offsets[e] - offsets[a]);
  auto test = [&](const Value& v) {
    if (!v.is_string()) {
      throw_type_error(std::string(fn) + " first arg must be str or a tuple of str, not " +
                       v.type_name());
    }
    const std::string& x = v.as_string();
    if (x.size() > window.size()) return false;
    return prefix ? window.compare(0, x.size(), x) == 0
                  : window.compare(window.size() - x.size(), x.size(), x) == 0;
  };
  if (affix.is_tuple()) {
    for (const Value& v : affix.items()) {
      if (test(v)) return true;
    }
    return false;
  }
  return test(affix);
}

Value partition(const std::string& s, const std::string& sep, bool from_right) {
  if (sep.empty()) throw_error("ValueError", "empty separator");
  size_t hit = from_right ? s.rfind(sep) : s.find(sep);
  if (hit == std::string::npos) {
    return from_right ? Value::tuple({Value(""), Value(""), Value(s)})
                      : Value::tuple({Value(s), Value(""), Value("")});
  }
  return Value::tuple({Value(s.substr(0, hit)), Value(sep), Value(s.substr(hit + sep.size()))});
}

}  // namespace

Value BoundMethod::call(Interpreter& interp, CallArgs& args) {
  if (self_.is_string()) return call_str(interp, args);
  return call_container(interp, args);
}

Value BoundMethod::call_str(Interpreter& interp, CallArgs& args) {
  const std::string& s = self_.as_string();
  const std::string& n = name_;
  if (n == "format") return Value(str_format(interp, s, args));
  if (std::optional<Value> v = call_str_search(interp, args)) return *v;
  if (std::optional<Value> v = call_str_reshape(interp, args)) return *v;
  bind_args(n.c_str(), args, {});
  if (n == "upper") return Value(py::upper(s));
  if (n == "lower" || n == "casefold") return Value(py::lower(s));
  if (n == "title") return Value(py::title(s));
  if (n == "capitalize") return Value(py::capitalize(s));
  if (n == "swapcase") return Value(py::swapcase(s));
  if (n == "isspace") return Value(py::str_isspace(s));
  if (n == "isalpha") return Value(py::str_isalpha(s));
  if (n == "isdigit" || n == "isdecimal" || n == "isnumeric") return Value(py::str_isdigit(s));
  if (n == "isalnum") return Value(py::str_isalnum(s));
  if (n == "islower") return Value(py::str_islower(s));
  if (n == "isupper") return Value(py::str_isupper(s));
  if (n == "istitle") return Value(py::str_istitle(s));
  if (n == "isascii") return Value(py::is_ascii(s));
  throw_error("AttributeError", "'str' object has no attribute '" + n + "'");
}

// Methods that look into the string: strip, split, startswith, find, count, replace, join.
std::optional<Value> BoundMethod::call_str_search(Interpreter& interp, CallArgs& args) {
  const std::string& s = self_.as_string();
  const std::string& n = name_;
  if (n == "strip" || n == "lstrip" || n == "rstrip") {
    BoundArgs b = bind_args(n.c_str(), args, {"chars"});
    return Value(py::strip(s, opt_string(b[0], n.c_str()), n != "rstrip", n != "lstrip"));
  }
  if (n == "split" || n == "rsplit") {
    BoundArgs b = bind_args(n.c_str(), args, {"sep", "maxsplit"});
    int64_t maxsplit = b.has(1) ? expect_int(b[1], nullptr) : -1;
    auto parts = py::split(s, opt_string(b[0], n.c_str()), maxsplit, n == "rsplit");
    if (!parts) throw_error("ValueError", "empty separator");
    interp.count_iterations(static_cast<int64_t>(parts->size()));
    return string_list(std::move(*parts));
  }
  if (n == "splitlines") {
    BoundArgs b = bind_args(n.c_str(), args, {"keepends"});
    return string_list(py::splitlines(s, b[0].truthy()));
  }
  if (n == "startswith" || n == "endswith") {
    BoundArgs b = bind_args(n.c_str(), args, {"prefix", "start", "end"}, 1);
    return Value(affix_match(s, b[0], b, n == "startswith", n.c_str()));
  }
  if (n == "find" || n == "rfind" || n == "index" || n == "rindex" || n == "count") {
    BoundArgs b = bind_args(n.c_str(), args, {"sub", "start", "end"}, 1);
    const std::string& sub = str_arg(b[0], n.c_str());
    if (n == "count") return Value(py::count(s, sub, opt_index(b[1]), opt_index(b[2])));
    int64_t pos = py::find(s, sub, opt_index(b[1]), opt_index(b[2]), n[0] == 'r');
    if (pos < 0 && (n == "index" || n == "rindex"))
      throw_error("ValueError", "substring not found");
    return Value(pos);
  }
  if (n == "replace") {
    BoundArgs b = bind_args(n.c_str(), args, {"old", "new", "count"}, 2);
    int64_t count = b.has(2) ? expect_int(b[2], nullptr) : -1;
    std::string out = py::replace(s, str_arg(b[0], "replace"), str_arg(b[1], "replace"), count);
    interp.check_size(out.size());
    return Value(std::move(out));
  }
  if (n == "join") {
    BoundArgs b = bind_args(n.c_str(), args, {"iterable"}, 1);
    std::string out;
    size_t index = 0;
    for (const Value& item : interp.iterate(b[0])) {
      if (!item.is_string()) {
        throw_type_error("sequence item " + std::to_string(index) + ": expected str instance, " +
                         item.type_name() + " found");
      }
      if (index++) out += s;
      out += item.as_string();
      interp.check_size(out.size());
    }
    return Value(std::move(out));
  }
  return std::nullopt;
}

// Methods that pad or cut the string: center, ljust, rjust, zfill, removeprefix, partition.
std::optional<Value> BoundMethod::call_str_reshape(Interpreter& interp, CallArgs& args) {
  const std::string& s = self_.as_string();
  const std::string& n = name_;
  if (n == "center" || n == "ljust" || n == "rjust" || n == "zfill") {
    BoundArgs b = n == "zfill" ? bind_args(n.c_str(), args, {"width"}, 1)
                               : bind_args(n.c_str(), args, {"width", "fillchar"}, 1);
    int64_t width = expect_int(b[0], nullptr);
    interp.check_size(static_cast<size_t>(std::max<int64_t>(width, 0)));
    if (n == "zfill") {
      int64_t len = static_cast<int64_t>(py::length(s));
      if (width <= len) return self_;
      size_t sign = (!s.empty() && (s[0] == '+' || s[0] == '-')) ? 1 : 0;
      return Value(s.substr(0, sign) + std::string(static_cast<size_t>(width - len), '0') +
                   s.substr(sign));
    }
    std::string fill = b.has(1) ? str_arg(b[1], n.c_str()) : " ";
    if (py::length(fill) != 1)
      throw_type_error("The fill character must be exactly one character long");
    return Value(py::pad(s, width, fill, n == "center" ? '^' : n == "ljust" ? '<' : '>'));
  }
  if (n == "removeprefix" || n == "removesuffix") {
    BoundArgs b = bind_args(n.c_str(), args, {"affix"}, 1);
    const std::string& a = str_arg(b[0], n.c_str());
    if (n == "removeprefix") return Value(s.rfind(a, 0) == 0 ? s.substr(a.size()) : s);
    bool ends = s.size() >= a.size() && s.compare(s.size() - a.size(), a.size(), a) == 0;
    return Value(ends && !a.empty() ? s.substr(0, s.size() - a.size()) : s);
  }
  if (n == "partition" || n == "rpartition") {
    BoundArgs b = bind_args(n.c_str(), args, {"sep"}, 1);
    return partition(s, str_arg(b[0], n.c_str()), n == "rpartition");
  }
  return std::nullopt;
}

Value BoundMethod::call_container(Interpreter& interp, CallArgs& args) {
  const std::string& n = name_;
  if (self_.is_dict()) {
    const Dict& d = self_.dict();
    if (n == "get") {
      BoundArgs b = bind_args("get", args, {"key", "default"}, 1);
      check_hashable(b[0]);
      const Value* v = d.find(b[0]);
      return v ? *v : (b.has(1) ? b[1] : Value::none());
    }
    bind_args(n.c_str(), args, {});
    if (n == "copy") return self_;
    ValueList out;
    for (const auto& [k, v] : d) {
      if (n == "items") out.push_back(Value::tuple({k, v}));
      if (n == "keys") out.push_back(k);
      if (n == "values") out.push_back(v);
    }
    interp.count_iterations(static_cast<int64_t>(out.size()));
    return Value::view(std::move(out), n == "items"  ? "dict_items"
                                       : n == "keys" ? "dict_keys"
                                                     : "dict_values");
  }
  if (self_.is_float() && n == "is_integer") {
    bind_args(n.c_str(), args, {});
    double f = self_.as_float();
    return Value(std::isfinite(f) && f == std::floor(f));
  }
  // list / tuple
  const ValueList& items = self_.items();
  if (n == "copy") return Value::list(items);
  if (n == "count") {
    BoundArgs b = bind_args("count", args, {"value"}, 1);
    int64_t c = 0;
    for (const Value& v : items) c += equals(v, b[0]);
    return Value(c);
  }
  BoundArgs b = bind_args("index", args, {"value", "start", "stop"}, 1);
  int64_t len = static_cast<int64_t>(items.size());
  auto clamp = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v < 0 ? *v + len : *v;
    return std::clamp<int64_t>(x, 0, len);
  };
  for (int64_t i = clamp(opt_index(b[1]), 0), e = clamp(opt_index(b[2]), len); i < e; ++i) {
    if (equals(items[static_cast<size_t>(i)], b[0])) return Value(i);
  }
  throw_error("ValueError", b[0].repr() + " is not in " + self_.type_name());
}

std::optional<Value> lookup_method(const Value& obj, const std::string& name) {
  auto bound = [&]() { return Value::callable(std::make_shared<BoundMethod>(obj, name)); };
  auto unsafe = [&]() {
    return Value::undefined("access to attribute " + string_repr(name) + " of " +
                                string_repr(obj.type_name()) + " object is unsafe.",
                            true);
  };
  switch (obj.kind()) {
    case Kind::kString:
      if (in_list(name, kStrMethods)) return bound();
      break;
    case Kind::kDict:
      if (in_list(name, {"get", "items", "keys", "values", "copy"})) return bound();
      if (in_list(name, {"clear", "pop", "popitem", "setdefault", "update"})) return unsafe();
      break;
    case Kind::kList:
      if (in_list(name, {"index", "count", "copy"})) return bound();
      if (in_list(name,
                  {"append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"})) {
        return unsafe();
      }
      break;
    case Kind::kTuple:
      if (in_list(name, {"index", "count"})) return bound();
      break;
    case Kind::kFloat:
      if (name == "is_integer") return bound();
      break;
    default:
      break;
  }
  return std::nullopt;
}

}  // namespace cvllm::jinja
