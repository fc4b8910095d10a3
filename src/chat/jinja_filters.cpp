// Built-in filters and tests: jinja2's defaults (jinja2/filters.py, jinja2/tests.py) with
// transformers' `tojson` (json.dumps without HTML escaping, ensure_ascii off, indent/separators/
// sort_keys exposed). Filters that jinja2 implements as generators (map, select, unique, items...)
// return one-shot iterators, so `|length` on them fails and `|list` is needed, as in jinja2.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <unordered_map>

#include "chat/jinja_builtins.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_pystr.h"

namespace cvllm::jinja {

namespace {

// ---- helpers

std::string as_text(const Value& v) {
  return v.str();
}

// jinja2's make_attrgetter: "a.b.0" looks up a, then b, then index 0, with the environment's
// getitem rules; `lower` lowercases string results (case-insensitive sorting and unique).
struct AttrGetter {
  std::vector<Value> parts;
  bool lower = false;
  std::optional<Value> default_value;

  static AttrGetter make(const Value& attribute, bool lower) {
    AttrGetter g;
    g.lower = lower;
    if (attribute.is_string()) {
      auto pieces = py::split(attribute.as_string(), std::string("."), -1, false);
      for (std::string& p : *pieces) {
        bool digits = !p.empty() && p.find_first_not_of("0123456789") == std::string::npos;
        g.parts.push_back(digits ? Value(static_cast<int64_t>(std::strtoll(p.c_str(), nullptr, 10)))
                                 : Value(p));
      }
    } else if (!attribute.is_none() && !attribute.is_undefined()) {
      g.parts.push_back(attribute);
    }
    return g;
  }

  Value operator()(const Value& item) const {
    Value v = item;
    for (const Value& part : parts) {
      v = get_item(v, part);
      if (default_value && v.is_undefined()) v = *default_value;
    }
    if (lower && v.is_string()) v = Value(py::lower(v.as_string()));
    return v;
  }
};

// jinja2's make_multi_attrgetter (sort's "age,name").
std::vector<AttrGetter> make_multi_getter(const Value& attribute, bool lower) {
  std::vector<AttrGetter> getters;
  if (attribute.is_string()) {
    auto names = py::split(attribute.as_string(), std::string(","), -1, false);
    for (const std::string& a : *names) {
      getters.push_back(AttrGetter::make(Value(a), lower));
    }
  } else {
    getters.push_back(AttrGetter::make(attribute, lower));
  }
  return getters;
}

Value generator(ValueList items) {
  return Value::iterator(std::move(items), "generator");
}

void sort_values(ValueList& items, const std::vector<Value>& keys, bool reverse) {
  std::vector<size_t> order(items.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return reverse ? less_than(keys[b], keys[a]) : less_than(keys[a], keys[b]);
  });
  ValueList sorted;
  sorted.reserve(items.size());
  for (size_t i : order) sorted.push_back(items[i]);
  items = std::move(sorted);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// ---- filters on strings

Value f_upper(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("upper", a, {});
  return Value(py::upper(as_text(v)));
}
Value f_lower(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("lower", a, {});
  return Value(py::lower(as_text(v)));
}
Value f_capitalize(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("capitalize", a, {});
  return Value(py::capitalize(as_text(v)));
}

// jinja2's title: split at runs of [-\s({[<] and capitalize each piece's first character.
Value f_title(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("title", a, {});
  std::string out;
  bool at_word_start = true;
  for (const std::string& ch : py::chars(as_text(v))) {
    char32_t c = py::code_points(ch)[0];
    bool separator = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py::is_space(c);
    if (separator) {
      out += ch;
    } else {
      out += at_word_start ? py::upper(ch) : py::lower(ch);
    }
    at_word_start = separator;
  }
  return Value(std::move(out));
}

Value f_trim(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("trim", a, {"chars"});
  std::optional<std::string> chars;
  if (b.has(0) && !b[0].is_none()) chars = as_text(b[0]);
  return Value(py::strip(as_text(v), chars, true, true));
}

Value f_center(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("center", a, {"width"});
  int64_t width = b.has(0) ? expect_int(b[0], nullptr) : 80;
  in.check_size(static_cast<size_t>(std::max<int64_t>(width, 0)));
  return Value(py::pad(as_text(v), width, " ", '^'));
}

Value f_replace(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("replace", a, {"old", "new", "count"}, 2);
  int64_t count = (b.has(2) && !b[2].is_none()) ? expect_int(b[2], nullptr) : -1;
  std::string out = py::replace(as_text(v), as_text(b[0]), as_text(b[1]), count);
  in.check_size(out.size());
  return Value(std::move(out));
}

Value f_indent(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("indent", a, {"width", "first", "blank"});
  if (v.is_undefined()) v.fail_undefined();
  std::string indention;
  if (b.has(0) && b[0].is_string()) {
    indention = b[0].as_string();
  } else {
    int64_t width = b.has(0) ? expect_int(b[0], nullptr) : 4;
    in.check_size(static_cast<size_t>(std::max<int64_t>(width, 0)));
    indention = std::string(static_cast<size_t>(std::max<int64_t>(width, 0)), ' ');
  }
  // jinja2 does `s += "\n"` first: lists accept it (and then lack splitlines), tuples refuse it.
  if (v.is_list()) throw_error("AttributeError", "'list' object has no attribute 'splitlines'");
  if (v.is_tuple()) throw_type_error("can only concatenate tuple (not \"str\") to tuple");
  if (!v.is_string()) {
    throw_type_error(std::string("unsupported operand type(s) for +=: '") + v.type_name() +
                     "' and 'str'");
  }
  std::string s = v.as_string() + "\n";  // jinja2's quirk for splitlines
  std::vector<std::string> lines = py::splitlines(s, false);
  std::string rv;
  if (b[2].truthy()) {
    for (size_t i = 0; i < lines.size(); ++i) rv += (i ? "\n" + indention : "") + lines[i];
  } else {
    rv = lines.empty() ? "" : lines[0];
    for (size_t i = 1; i < lines.size(); ++i)
      rv += "\n" + (lines[i].empty() ? "" : indention) + lines[i];
  }
  if (b[1].truthy()) rv = indention + rv;
  in.check_size(rv.size());
  return Value(std::move(rv));
}

Value f_truncate(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("truncate", a, {"length", "killwords", "end", "leeway"});
  int64_t length = b.has(0) ? expect_int(b[0], nullptr) : 255;
  std::string end = b.has(2) ? as_text(b[2]) : "...";
  int64_t leeway = (b.has(3) && !b[3].is_none()) ? expect_int(b[3], nullptr) : 5;
  int64_t end_len = static_cast<int64_t>(py::length(end));
  if (length < end_len)
    throw_error("AssertionError", "expected length >= " + std::to_string(end_len) + ", got " +
                                      std::to_string(length));
  if (leeway < 0)
    throw_error("AssertionError", "expected leeway >= 0, got " + std::to_string(leeway));
  // jinja2 works on the value itself: len() and slicing, so a short list comes back unchanged.
  if (py_len(v) <= length + leeway) return v;
  if (!v.is_string()) {
    Value head = get_slice(v, Value::none(), Value(length - end_len), Value::none());
    if (b[1].truthy()) return binary_op(BinaryOp::kAdd, head, Value(end), end.size() + 1);
    throw_error("AttributeError",
                std::string("'") + v.type_name() + "' object has no attribute 'rsplit'");
  }
  std::string head = py::slice(v.as_string(), std::nullopt, length - end_len, 1);
  if (b[1].truthy()) return Value(head + end);
  auto parts = py::split(head, std::string(" "), 1, true);
  return Value((*parts)[0] + end);
}

Value f_wordcount(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("wordcount", a, {});
  int64_t words = 0;
  bool in_word = false;
  for (char32_t c : py::code_points(as_text(v))) {
    bool w = py::is_word(c);
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value(words);
}

Value f_string(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("string", a, {});
  return Value(as_text(v));
}

Value f_safe(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("safe", a, {});
  return v.is_string() ? v : Value(as_text(v));
}

Value f_escape(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("escape", a, {});
  return Value(html_escape(as_text(v)));
}

Value f_striptags(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("striptags", a, {});
  std::string s = as_text(v), text;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, 4, "<!--") == 0) {
      size_t end = s.find("-->", i + 4);
      i = end == std::string::npos ? s.size() : end + 3;
    } else if (s[i] == '<' && s.find('>', i) != std::string::npos) {
      i = s.find('>', i) + 1;
    } else {
      text += s[i++];
    }
  }
  auto words = py::split(text, std::nullopt, -1, false);
  std::string joined;
  for (size_t i = 0; i < words->size(); ++i) joined += (i ? " " : "") + (*words)[i];
  const std::pair<const char*, const char*> entities[] = {{"&lt;", "<"},   {"&gt;", ">"},
                                                          {"&#34;", "\""}, {"&quot;", "\""},
                                                          {"&#39;", "'"},  {"&amp;", "&"}};
  for (const auto& [from, to] : entities) joined = py::replace(joined, from, to, -1);
  return Value(joined);
}

Value f_urlencode(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("urlencode", a, {});
  auto quote = [](const std::string& s, bool plus) {
    std::string out;
    for (unsigned char c : s) {
      if (isalnum(c) || c == '_' || c == '.' || c == '-' || c == '~' || (!plus && c == '/')) {
        out += static_cast<char>(c);
      } else if (plus && c == ' ') {
        out += '+';
      } else {
        char buf[4];
        std::snprintf(buf, sizeof(buf), "%%%02X", c);
        out += buf;
      }
    }
    return out;
  };
  if (v.is_string()) return Value(quote(v.as_string(), false));
  std::string out;
  ValueList pairs;
  if (v.is_dict()) {
    for (const auto& [k, x] : v.dict()) pairs.push_back(Value::tuple({k, x}));
  } else {
    pairs = in.iterate(v);
  }
  for (const Value& p : pairs) {
    ValueList kv = in.iterate(p);
    if (kv.size() != 2) throw_error("ValueError", "urlencode needs key/value pairs");
    out += (out.empty() ? "" : "&") + quote(kv[0].str(), true) + "=" + quote(kv[1].str(), true);
  }
  return Value(out);
}

Value f_format(Interpreter&, const Value& v, CallArgs& a) {
  if (!a.args.empty() && !a.kwargs.empty()) {
    throw_error("FilterArgumentError",
                "can't handle positional and keyword arguments at the same time");
  }
  if (!a.kwargs.empty()) {
    Dict d;
    for (const auto& [k, x] : a.kwargs) d.set(Value(k), x);
    return Value(percent_format(as_text(v), Value::dict(std::move(d))));
  }
  return Value(percent_format(as_text(v), Value::tuple(a.args)));
}

Value f_filesizeformat(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("filesizeformat", a, {"binary"});
  bool binary = b[0].truthy();
  double bytes = v.is_number() ? v.as_float() : parse_python_float(as_text(v)).value_or(0.0);
  double base = binary ? 1024 : 1000;
  const char* prefixes[] = {binary ? "KiB" : "kB", binary ? "MiB" : "MB", binary ? "GiB" : "GB",
                            binary ? "TiB" : "TB", binary ? "PiB" : "PB", binary ? "EiB" : "EB",
                            binary ? "ZiB" : "ZB", binary ? "YiB" : "YB"};
  if (bytes == 1) return Value("1 Byte");
  if (bytes < base) return Value(std::to_string(static_cast<int64_t>(bytes)) + " Bytes");
  char buf[64];
  for (int i = 0; i < 8; ++i) {
    double unit = std::pow(base, i + 2);
    if (bytes < unit || i == 7) {
      std::snprintf(buf, sizeof(buf), "%.1f %s", base * bytes / unit, prefixes[i]);
      break;
    }
  }
  return Value(buf);
}

// ---- filters on numbers

Value f_int(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("int", a, {"default", "base"});
  Value fallback = b.has(0) ? b[0] : Value(0);
  int base = b.has(1) ? static_cast<int>(expect_int(b[1], nullptr)) : 10;
  if (v.is_undefined()) v.fail_undefined();  // int(Undefined) raises, and jinja2 lets it
  if (v.is_string()) {
    if (auto i = parse_python_int(v.as_string(), base)) return Value(*i);
    if (auto f = parse_python_float(v.as_string())) {
      if (std::isfinite(*f) && std::fabs(*f) < 9.2e18) return Value(static_cast<int64_t>(*f));
    }
    return fallback;
  }
  if (v.is_integral()) return Value(v.as_int());
  if (v.is_float()) {
    double f = v.as_float();
    if (std::isfinite(f) && std::fabs(f) < 9.2e18) return Value(static_cast<int64_t>(f));
  }
  return fallback;
}

Value f_float(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("float", a, {"default"});
  Value fallback = b.has(0) ? b[0] : Value(0.0);
  if (v.is_undefined()) v.fail_undefined();
  if (v.is_number()) return Value(v.as_float());
  if (v.is_string()) {
    if (auto f = parse_python_float(v.as_string())) return Value(*f);
  }
  return fallback;
}

Value f_abs(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("abs", a, {});
  if (v.is_integral()) {
    if (v.as_int() == INT64_MIN) throw_error("OverflowError", "integer overflow");
    return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  if (v.is_float()) return Value(std::fabs(v.as_float()));
  throw_type_error(std::string("bad operand type for abs(): '") + v.type_name() + "'");
}

// Python's round(x, n) for floats: correctly rounded, ties to even on the exact binary value.
double python_round(double x, int64_t n) {
  if (!std::isfinite(x)) return x;
  if (n >= 0) {
    if (n > 300) return x;
    char buf[512];
    std::snprintf(buf, sizeof(buf), "%.*f", static_cast<int>(n), x);
    return std::strtod(buf, nullptr);
  }
  double scale = std::pow(10.0, static_cast<double>(-n));
  return std::nearbyint(x / scale) * scale;
}

Value f_round(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("round", a, {"precision", "method"});
  int64_t precision = b.has(0) ? expect_int(b[0], nullptr) : 0;
  std::string method = b.has(1) ? as_text(b[1]) : "common";
  if (method != "common" && method != "ceil" && method != "floor") {
    throw_error("FilterArgumentError", "method must be common, ceil or floor");
  }
  if (!v.is_number())
    throw_type_error(std::string("type ") + v.type_name() + " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral() && precision >= 0) return Value(v.as_int());
    return Value(python_round(v.as_float(), precision));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  double x = v.as_float() * scale;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

// ---- filters on sequences

Value f_length(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("length", a, {});
  return Value(py_len(v));
}

Value f_list(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("list", a, {});
  return Value::list(in.iterate(v));
}

Value f_first(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("first", a, {});
  if (v.is_iterator()) {
    IteratorObject& it = v.iter();
    if (it.pos < it.items.size()) return it.items[it.pos++];
    return Value::undefined("No first item, sequence was empty.");
  }
  ValueList items = in.iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("last", a, {});
  if (!(v.is_string() || v.is_sequence() || v.is_dict() || v.is_view() || v.is_undefined())) {
    throw_type_error(std::string("'") + v.type_name() + "' object is not reversible");
  }
  ValueList items = in.iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

Value f_join(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("join", a, {"d", "attribute"});
  std::string sep = b.has(0) ? as_text(b[0]) : "";
  ValueList items = in.iterate(v);
  AttrGetter getter = AttrGetter::make(b[1], false);
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += as_text(b.has(1) && !b[1].is_none() ? getter(items[i]) : items[i]);
    in.check_size(out.size());
  }
  return Value(std::move(out));
}

Value f_reverse(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("reverse", a, {});
  if (v.is_string()) return Value(py::slice(v.as_string(), std::nullopt, std::nullopt, -1));
  bool iterable =
      v.is_sequence() || v.is_dict() || v.is_view() || v.is_iterator() || v.is_undefined();
  if (!iterable) throw_error("FilterArgumentError", "argument must be iterable");
  ValueList items = in.iterate(v);
  std::reverse(items.begin(), items.end());
  if (v.is_list()) return Value::iterator(std::move(items), "list_reverseiterator");
  if (v.is_tuple()) return Value::iterator(std::move(items), "reversed");
  if (v.is_dict()) return Value::iterator(std::move(items), "dict_reversekeyiterator");
  return Value::list(std::move(items));
}

Value f_items(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("items", a, {});
  if (v.is_undefined()) return generator({});
  if (!v.is_dict()) throw_type_error("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, x] : v.dict()) out.push_back(Value::tuple({k, x}));
  return generator(std::move(out));
}

Value f_dictsort(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("dictsort", a, {"case_sensitive", "by", "reverse"});
  std::string by = b.has(1) ? as_text(b[1]) : "key";
  if (by != "key" && by != "value")
    throw_error("FilterArgumentError", "You can only sort by either \"key\" or \"value\"");
  if (v.is_undefined()) v.fail_undefined();
  if (!v.is_dict()) {
    throw_error("AttributeError",
                std::string("'") + v.type_name() + "' object has no attribute 'items'");
  }
  ValueList items;
  std::vector<Value> keys;
  for (const auto& [k, x] : v.dict()) {
    items.push_back(Value::tuple({k, x}));
    Value key = by == "key" ? k : x;
    if (!b[0].truthy() && key.is_string()) key = Value(py::lower(key.as_string()));
    keys.push_back(key);
  }
  in.count_iterations(static_cast<int64_t>(items.size()));
  sort_values(items, keys, b[2].truthy());
  return Value::list(std::move(items));
}

Value f_sort(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("sort", a, {"reverse", "case_sensitive", "attribute"});
  ValueList items = in.iterate(v);
  std::vector<AttrGetter> getters = make_multi_getter(b[2], !b[1].truthy());
  std::vector<Value> keys;
  for (const Value& item : items) {
    ValueList key;
    for (const AttrGetter& g : getters) key.push_back(g(item));
    keys.push_back(Value::list(std::move(key)));
  }
  sort_values(items, keys, b[0].truthy());
  return Value::list(std::move(items));
}

Value f_unique(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("unique", a, {"case_sensitive", "attribute"});
  AttrGetter getter = AttrGetter::make(b[1], !b[0].truthy());
  ValueList out, seen;
  for (const Value& item : in.iterate(v)) {
    Value key = getter(item);
    check_hashable(key);
    bool found = false;
    for (const Value& s : seen) {
      if (equals(s, key)) {
        found = true;
        break;
      }
    }
    if (!found) {
      seen.push_back(key);
      out.push_back(item);
    }
  }
  return generator(std::move(out));
}

Value min_or_max(Interpreter& in, const Value& v, CallArgs& a, bool want_max) {
  BoundArgs b = bind_args(want_max ? "max" : "min", a, {"case_sensitive", "attribute"});
  ValueList items = in.iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  AttrGetter getter = AttrGetter::make(b[1], !b[0].truthy());
  size_t best = 0;
  Value best_key = getter(items[0]);
  for (size_t i = 1; i < items.size(); ++i) {
    Value key = getter(items[i]);
    // Python's max() asks `key > best`, min() `key < best` (and says so in its TypeError).
    if (want_max ? compare_order(key, best_key, ">") > 0 : compare_order(key, best_key, "<") < 0) {
      best = i;
      best_key = key;
    }
  }
  return items[best];
}
Value f_min(Interpreter& in, const Value& v, CallArgs& a) {
  return min_or_max(in, v, a, false);
}
Value f_max(Interpreter& in, const Value& v, CallArgs& a) {
  return min_or_max(in, v, a, true);
}

Value f_sum(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("sum", a, {"attribute", "start"});
  Value total = b.has(1) ? b[1] : Value(0);
  if (total.is_string()) throw_type_error("sum() can't sum strings [use ''.join(seq) instead]");
  AttrGetter getter = AttrGetter::make(b[0], false);
  for (const Value& item : in.iterate(v)) {
    total = binary_op(BinaryOp::kAdd, total, getter(item), in.limits().max_output_bytes);
  }
  return total;
}

Value f_default(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("default", a, {"default_value", "boolean"});
  if (v.is_undefined() || (b[1].truthy() && !v.truthy())) return b.has(0) ? b[0] : Value("");
  return v;
}

Value f_attr(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("attr", a, {"name"}, 1);
  std::string name = as_text(b[0]);
  // Attributes only: no fallback to items, so a dict's keys are not found.
  if (std::optional<Value> m = lookup_method(v, name)) return *m;
  if (v.is_namespace()) {
    if (const Value* x = v.ns().attrs.find(std::string_view(name))) return *x;
  }
  if (v.is_callable()) {
    Value x = v.callable()->get_attr(name);
    if (!x.is_undefined()) return x;
  }
  return Value::undefined(string_repr(v.object_type_repr()) + " has no attribute " +
                          string_repr(name));
}

Value f_map(Interpreter& in, const Value& v, CallArgs& a) {
  if (!v.truthy()) return generator({});  // jinja2 checks `if value:` before anything else
  ValueList items = in.iterate(v);
  ValueList out;
  bool by_attribute = a.args.empty();
  if (by_attribute) {
    std::optional<Value> attribute, fallback;
    for (const auto& [k, x] : a.kwargs) {
      if (k == "attribute")
        attribute = x;
      else if (k == "default")
        fallback = x;
      else
        throw_error("FilterArgumentError", "Unexpected keyword argument " + string_repr(k));
    }
    if (!attribute) throw_error("FilterArgumentError", "map requires a filter argument");
    AttrGetter getter = AttrGetter::make(*attribute, false);
    if (fallback && !fallback->is_none()) getter.default_value = fallback;
    for (const Value& item : items) out.push_back(getter(item));
    return generator(std::move(out));
  }
  std::string filter = as_text(a.args[0]);
  CallArgs rest{ValueList(a.args.begin() + 1, a.args.end()), a.kwargs};
  for (const Value& item : items) {
    CallArgs call_args = rest;
    out.push_back(in.apply_filter(filter, item, call_args));
  }
  return generator(std::move(out));
}

Value select_or_reject(Interpreter& in, const Value& v, CallArgs& a, bool select, bool by_attr) {
  ValueList out;
  if (!v.truthy()) return generator({});
  size_t off = 0;
  std::optional<AttrGetter> getter;
  if (by_attr) {
    if (a.args.empty()) throw_error("FilterArgumentError", "Missing parameter for attribute name");
    getter = AttrGetter::make(a.args[0], false);
    off = 1;
  }
  std::optional<std::string> test;
  CallArgs test_args;
  if (a.args.size() > off) {
    test = as_text(a.args[off]);
    test_args.args.assign(a.args.begin() + static_cast<std::ptrdiff_t>(off) + 1, a.args.end());
    test_args.kwargs = a.kwargs;
  }
  for (const Value& item : in.iterate(v)) {
    Value x = getter ? (*getter)(item) : item;
    bool ok;
    if (test) {
      CallArgs call_args = test_args;
      ok = in.apply_test(*test, x, call_args);
    } else {
      ok = x.truthy();
    }
    if (ok == select) out.push_back(item);
  }
  return generator(std::move(out));
}
Value f_select(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, true, false);
}
Value f_reject(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, false, false);
}
Value f_selectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, true, true);
}
Value f_rejectattr(Interpreter& in, const Value& v, CallArgs& a) {
  return select_or_reject(in, v, a, false, true);
}

Value f_batch(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("batch", a, {"linecount", "fill_with"}, 1);
  int64_t n = expect_int(b[0], nullptr);
  if (n <= 0) throw_error("ValueError", "batch size must be positive");
  ValueList out, tmp;
  for (const Value& item : in.iterate(v)) {
    if (static_cast<int64_t>(tmp.size()) == n) {
      out.push_back(Value::list(std::move(tmp)));
      tmp.clear();
    }
    tmp.push_back(item);
  }
  if (!tmp.empty()) {
    if (b.has(1) && !b[1].is_none()) {
      while (static_cast<int64_t>(tmp.size()) < n) tmp.push_back(b[1]);
    }
    out.push_back(Value::list(std::move(tmp)));
  }
  return generator(std::move(out));
}

Value f_slice(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("slice", a, {"slices", "fill_with"}, 1);
  ValueList seq = in.iterate(v);
  int64_t slices = expect_int(b[0], nullptr);
  if (slices <= 0) throw_error("ZeroDivisionError", "integer division or modulo by zero");
  in.count_iterations(slices);
  int64_t length = static_cast<int64_t>(seq.size());
  int64_t per = length / slices, extra = length % slices, offset = 0;
  ValueList out;
  for (int64_t i = 0; i < slices; ++i) {
    int64_t start = offset + i * per;
    if (i < extra) ++offset;
    int64_t end = offset + (i + 1) * per;
    ValueList tmp(seq.begin() + start, seq.begin() + end);
    if (b.has(1) && !b[1].is_none() && i >= extra) tmp.push_back(b[1]);
    out.push_back(Value::list(std::move(tmp)));
  }
  return generator(std::move(out));
}

Value f_groupby(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("groupby", a, {"attribute", "default", "case_sensitive"}, 1);
  AttrGetter getter = AttrGetter::make(b[0], !b[2].truthy());
  if (b.has(1) && !b[1].is_none()) getter.default_value = b[1];
  ValueList items = in.iterate(v);
  std::vector<Value> keys;
  for (const Value& item : items) keys.push_back(getter(item));
  sort_values(items, keys, false);
  ValueList out;
  AttrGetter raw = getter;
  raw.lower = false;
  for (size_t i = 0; i < items.size();) {
    Value key = getter(items[i]);
    ValueList group;
    size_t j = i;
    for (; j < items.size() && equals(getter(items[j]), key); ++j) group.push_back(items[j]);
    out.push_back(
        Value::tuple({b[2].truthy() ? key : raw(items[i]), Value::list(std::move(group))}));
    i = j;
  }
  return Value::list(std::move(out));
}

Value f_pprint(Interpreter&, const Value& v, CallArgs& a) {
  bind_args("pprint", a, {});
  return Value(v.repr());
}

// transformers' tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value f_tojson(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("tojson", a, {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions opt;
  opt.ensure_ascii = b[0].truthy();
  opt.sort_keys = b[3].truthy();
  if (b.has(1) && !b[1].is_none()) {
    opt.has_indent = true;
    if (b[1].is_string()) {
      opt.indent = b[1].as_string();
    } else {
      int64_t n = expect_int(b[1], nullptr);
      in.check_size(static_cast<size_t>(std::max<int64_t>(n, 0)));
      opt.indent = std::string(static_cast<size_t>(std::max<int64_t>(n, 0)), ' ');
    }
    opt.item_separator = ",";
  }
  if (b.has(2) && !b[2].is_none()) {
    ValueList seps = in.iterate(b[2]);
    if (seps.size() != 2 || !seps[0].is_string() || !seps[1].is_string()) {
      throw_error("ValueError", "separators must be a pair of strings");
    }
    opt.item_separator = seps[0].as_string();
    opt.key_separator = seps[1].as_string();
  }
  std::string out = json_dumps(v, opt);
  in.check_size(out.size());
  return Value(std::move(out));
}

Value f_unsupported(Interpreter&, const Value&, CallArgs&) {
  throw_error("TemplateRuntimeError",
              "this filter (random, urlize, wordwrap or xmlattr) is not supported by cvllm");
}

// ---- tests

bool t_defined(Interpreter&, const Value& v, CallArgs&) {
  return !v.is_undefined();
}
bool t_undefined(Interpreter&, const Value& v, CallArgs&) {
  return v.is_undefined();
}
bool t_none(Interpreter&, const Value& v, CallArgs&) {
  return v.is_none();
}
bool t_boolean(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool();
}
bool t_false(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool() && !v.as_bool();
}
bool t_true(Interpreter&, const Value& v, CallArgs&) {
  return v.is_bool() && v.as_bool();
}
bool t_integer(Interpreter&, const Value& v, CallArgs&) {
  return v.is_int();
}
bool t_float(Interpreter&, const Value& v, CallArgs&) {
  return v.is_float();
}
bool t_number(Interpreter&, const Value& v, CallArgs&) {
  return v.is_number();
}
bool t_string(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string();
}
bool t_mapping(Interpreter&, const Value& v, CallArgs&) {
  return v.is_dict();
}
bool t_sequence(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_sequence() || v.is_dict() || v.is_undefined();
}
bool t_iterable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() || v.is_sequence() || v.is_dict() || v.is_iterator() || v.is_view() ||
         v.is_undefined() || (v.is_callable() && std::string_view(v.type_name()) == "LoopContext");
}
bool t_callable(Interpreter&, const Value& v, CallArgs&) {
  return v.is_callable() || v.is_undefined();
}
bool t_escaped(Interpreter&, const Value&, CallArgs&) {
  return false;
}

bool mod_test(Interpreter& in, const Value& v, const Value& divisor, int64_t remainder) {
  return equals(binary_op(BinaryOp::kMod, v, divisor, in.limits().max_output_bytes),
                Value(remainder));
}
bool t_odd(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("odd", a, {});
  return mod_test(in, v, Value(2), 1);
}
bool t_even(Interpreter& in, const Value& v, CallArgs& a) {
  bind_args("even", a, {});
  return mod_test(in, v, Value(2), 0);
}
bool t_divisibleby(Interpreter& in, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("divisibleby", a, {"num"}, 1);
  return mod_test(in, v, b[0], 0);
}

bool t_lower(Interpreter&, const Value& v, CallArgs&) {
  return py::str_islower(v.str());
}
bool t_upper(Interpreter&, const Value& v, CallArgs&) {
  return py::str_isupper(v.str());
}
bool t_in(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("in", a, {"seq"}, 1);
  return contains(b[0], v);
}
bool t_sameas(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("sameas", a, {"other"}, 1);
  return v.same_as(b[0]);
}
bool t_filter(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() && find_filter(v.as_string());
}
bool t_test(Interpreter&, const Value& v, CallArgs&) {
  return v.is_string() && find_test(v.as_string());
}

template <CompareOp op>
bool t_compare(Interpreter&, const Value& v, CallArgs& a) {
  BoundArgs b = bind_args("compare", a, {"other"}, 1);
  return compare_op(op, v, b[0]);
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  static const std::unordered_map<std::string_view, FilterFn> filters = {
      {"abs", f_abs},
      {"attr", f_attr},
      {"batch", f_batch},
      {"capitalize", f_capitalize},
      {"center", f_center},
      {"count", f_length},
      {"d", f_default},
      {"default", f_default},
      {"dictsort", f_dictsort},
      {"e", f_escape},
      {"escape", f_escape},
      {"filesizeformat", f_filesizeformat},
      {"first", f_first},
      {"float", f_float},
      {"forceescape", f_escape},
      {"format", f_format},
      {"groupby", f_groupby},
      {"indent", f_indent},
      {"int", f_int},
      {"items", f_items},
      {"join", f_join},
      {"last", f_last},
      {"length", f_length},
      {"list", f_list},
      {"lower", f_lower},
      {"map", f_map},
      {"max", f_max},
      {"min", f_min},
      {"pprint", f_pprint},
      {"random", f_unsupported},
      {"reject", f_reject},
      {"rejectattr", f_rejectattr},
      {"replace", f_replace},
      {"reverse", f_reverse},
      {"round", f_round},
      {"safe", f_safe},
      {"select", f_select},
      {"selectattr", f_selectattr},
      {"slice", f_slice},
      {"sort", f_sort},
      {"string", f_string},
      {"striptags", f_striptags},
      {"sum", f_sum},
      {"title", f_title},
      {"tojson", f_tojson},
      {"trim", f_trim},
      {"truncate", f_truncate},
      {"unique", f_unique},
      {"upper", f_upper},
      {"urlencode", f_urlencode},
      {"urlize", f_unsupported},
      {"wordcount", f_wordcount},
      {"wordwrap", f_unsupported},
      {"xmlattr", f_unsupported},
  };
  auto it = filters.find(name);
  return it == filters.end() ? nullptr : it->second;
}

TestFn find_test(std::string_view name) {
  static const std::unordered_map<std::string_view, TestFn> tests = {
      {"odd", t_odd},
      {"even", t_even},
      {"divisibleby", t_divisibleby},
      {"defined", t_defined},
      {"undefined", t_undefined},
      {"filter", t_filter},
      {"test", t_test},
      {"none", t_none},
      {"boolean", t_boolean},
      {"false", t_false},
      {"true", t_true},
      {"integer", t_integer},
      {"float", t_float},
      {"lower", t_lower},
      {"upper", t_upper},
      {"string", t_string},
      {"mapping", t_mapping},
      {"number", t_number},
      {"sequence", t_sequence},
      {"iterable", t_iterable},
      {"callable", t_callable},
      {"sameas", t_sameas},
      {"escaped", t_escaped},
      {"in", t_in},
      {"==", t_compare<CompareOp::kEq>},
      {"eq", t_compare<CompareOp::kEq>},
      {"equalto", t_compare<CompareOp::kEq>},
      {"!=", t_compare<CompareOp::kNe>},
      {"ne", t_compare<CompareOp::kNe>},
      {">", t_compare<CompareOp::kGt>},
      {"gt", t_compare<CompareOp::kGt>},
      {"greaterthan", t_compare<CompareOp::kGt>},
      {">=", t_compare<CompareOp::kGe>},
      {"ge", t_compare<CompareOp::kGe>},
      {"<", t_compare<CompareOp::kLt>},
      {"lt", t_compare<CompareOp::kLt>},
      {"lessthan", t_compare<CompareOp::kLt>},
      {"<=", t_compare<CompareOp::kLe>},
      {"le", t_compare<CompareOp::kLe>},
  };
  auto it = tests.find(name);
  return it == tests.end() ? nullptr : it->second;
}

}  // namespace cvllm::jinja
