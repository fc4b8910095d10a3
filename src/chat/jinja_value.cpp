#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "chat/jinja_pystr.h"
#include "util/utf8.h"

namespace cvllm::jinja {

// Access to a Value's storage for the factories below.
struct ValueAccess {
  static const ListObject& list(const Value& v) {
    return *static_cast<const ListObject*>(v.obj_.get());
  }
  static const DictObject& dict(const Value& v) {
    return *static_cast<const DictObject*>(v.obj_.get());
  }
  static const IteratorObject& iter(const Value& v) {
    return *static_cast<const IteratorObject*>(v.obj_.get());
  }
};

void throw_error(const char* type, std::string message) {
  throw JinjaError(type, std::move(message));
}

void throw_type_error(std::string message) {
  throw JinjaError("TypeError", std::move(message));
}

Value Callable::get_attr(const std::string&) const {
  return Value::undefined("");
}

// ---------------------------------------------------------------------------------------------
// Construction and access

Value Value::undefined(std::string hint, bool security_error) {
  Value v;
  v.str_ = std::move(hint);
  v.num_.i = security_error ? 1 : 0;
  return v;
}

Value Value::none() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}

namespace {

int nesting_depth(const Value& v) {
  switch (v.kind()) {
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kView:
      return ValueAccess::list(v).depth;
    case Kind::kDict:
      return ValueAccess::dict(v).depth;
    case Kind::kIterator:
      return ValueAccess::iter(v).depth;
    default:
      return 0;
  }
}

void check_nesting(int depth) {
  if (depth > kMaxValueDepth)
    throw_error("RecursionError", "maximum recursion depth exceeded (values nested too deeply)");
}

}  // namespace

Value Value::list(ValueList items) {
  int depth = 1;
  for (const Value& item : items) depth = std::max(depth, nesting_depth(item) + 1);
  check_nesting(depth);
  Value v;
  v.kind_ = Kind::kList;
  v.obj_ = std::make_shared<ListObject>(ListObject{std::move(items), nullptr, depth});
  return v;
}

Value Value::view(ValueList items, const char* view_name) {
  Value v = list(std::move(items));
  v.kind_ = Kind::kView;
  static_cast<ListObject*>(v.obj_.get())->view_name = view_name;
  return v;
}

Value Value::tuple(ValueList items) {
  Value v = list(std::move(items));
  v.kind_ = Kind::kTuple;
  return v;
}

Value Value::dict(Dict d) {
  int depth = 1;
  for (const auto& [k, item] : d)
    depth = std::max({depth, nesting_depth(k) + 1, nesting_depth(item) + 1});
  check_nesting(depth);
  Value v;
  v.kind_ = Kind::kDict;
  v.obj_ = std::make_shared<DictObject>(DictObject{std::move(d), depth});
  return v;
}

Value Value::callable(std::shared_ptr<Callable> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::move(fn);
  return v;
}

Value Value::make_namespace(Dict attrs) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.obj_ = std::make_shared<NamespaceObject>(NamespaceObject{std::move(attrs)});
  return v;
}

Value Value::iterator(ValueList items, std::string type_name) {
  int depth = 1;
  for (const Value& item : items) depth = std::max(depth, nesting_depth(item) + 1);
  check_nesting(depth);
  Value v;
  v.kind_ = Kind::kIterator;
  v.obj_ = std::make_shared<IteratorObject>(
      IteratorObject{std::move(items), 0, std::move(type_name), depth});
  return v;
}

double Value::as_float() const {
  if (kind_ == Kind::kFloat) return num_.f;
  return static_cast<double>(as_int());
}

const ValueList& Value::items() const {
  return static_cast<const ListObject*>(obj_.get())->items;
}

const Dict& Value::dict() const {
  return static_cast<const DictObject*>(obj_.get())->dict;
}

NamespaceObject& Value::ns() const {
  return *static_cast<NamespaceObject*>(obj_.get());
}

IteratorObject& Value::iter() const {
  return *static_cast<IteratorObject*>(obj_.get());
}

void Value::fail_undefined() const {
  throw JinjaError(undefined_exception(), str_.empty() ? std::string("value is undefined") : str_);
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
      return num_.b;
    case Kind::kInt:
      return num_.i != 0;
    case Kind::kFloat:
      return num_.f != 0.0;
    case Kind::kString:
      return !str_.empty();
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kView:
      return !items().empty();
    case Kind::kDict:
      return !dict().empty();
    default:
      return true;  // callables, namespaces and generators are always true in Python
  }
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return "list";
    case Kind::kTuple:
      return "tuple";
    case Kind::kDict:
      return "dict";
    case Kind::kCallable:
      return fn_->type_name();
    case Kind::kNamespace:
      return "TemplateNamespace";
    case Kind::kIterator:
      return iter().type_name.c_str();
    case Kind::kView:
      return static_cast<const ListObject*>(obj_.get())->view_name;
  }
  return "object";
}

std::string Value::object_type_repr() const {
  if (kind_ == Kind::kNone) return "None";
  if (kind_ == Kind::kNamespace) {
    return "transformers.utils.chat_template_utils.TemplateNamespace object";
  }
  return std::string(type_name()) + " object";
}

bool Value::same_as(const Value& other) const {
  if (kind_ != other.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
    case Kind::kString:
      return equals(*this, other);
    case Kind::kCallable:
      return fn_ == other.fn_;
    default:
      return obj_ == other.obj_;
  }
}

// ---------------------------------------------------------------------------------------------
// str() and repr()

std::string float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  // Shortest round-trip digits in scientific form, then laid out as Python's repr does: plain
  // notation for decimal exponents in [-4, 16), scientific with a 2-digit exponent otherwise.
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  int exponent = std::stoi(sci.substr(e_pos + 1));
  bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char c : mantissa) {
    if (c != '.') digits += c;
  }
  std::string out = negative ? "-" : "";
  if (exponent >= -4 && exponent < 16) {
    if (exponent < 0) {
      out += "0." + std::string(-exponent - 1, '0') + digits;
    } else if (static_cast<int>(digits.size()) <= exponent + 1) {
      out += digits + std::string(exponent + 1 - digits.size(), '0') + ".0";
    } else {
      out += digits.substr(0, exponent + 1) + "." + digits.substr(exponent + 1);
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char exp_buf[16];
  std::snprintf(exp_buf, sizeof(exp_buf), "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
  return out + exp_buf;
}

std::string string_repr(std::string_view s) {
  bool has_single = s.find('\'') != std::string_view::npos;
  bool has_double = s.find('"') != std::string_view::npos;
  char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    char32_t c = utf8::decode(s, pos);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (py::is_printable(c)) {
      out.append(s.substr(start, pos - start));
    } else {
      char buf[16];
      if (c < 0x100) {
        std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(c));
      } else if (c < 0x10000) {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      } else {
        std::snprintf(buf, sizeof(buf), "\\U%08x", static_cast<unsigned>(c));
      }
      out += buf;
    }
  }
  out += quote;
  return out;
}

namespace {

void check_depth(int depth) {
  if (depth > kMaxValueDepth) throw_error("RecursionError", "maximum recursion depth exceeded");
}

void append_repr(std::string& out, const Value& v, int depth);

void append_sequence(std::string& out, const ValueList& items, bool tuple, int depth) {
  out += tuple ? '(' : '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    append_repr(out, items[i], depth + 1);
  }
  if (tuple && items.size() == 1) out += ',';
  out += tuple ? ')' : ']';
}

void append_dict(std::string& out, const Dict& d, int depth) {
  out += '{';
  bool first = true;
  for (const auto& [k, v] : d) {
    if (!first) out += ", ";
    first = false;
    append_repr(out, k, depth + 1);
    out += ": ";
    append_repr(out, v, depth + 1);
  }
  out += '}';
}

void append_repr(std::string& out, const Value& v, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Kind::kUndefined:
      out += "Undefined";
      return;
    case Kind::kString:
      out += string_repr(v.as_string());
      return;
    case Kind::kList:
    case Kind::kTuple:
      append_sequence(out, v.items(), v.is_tuple(), depth);
      return;
    case Kind::kView:
      out += v.type_name();
      out += '(';
      append_sequence(out, v.items(), false, depth);
      out += ')';
      return;
    case Kind::kDict:
      append_dict(out, v.dict(), depth);
      return;
    case Kind::kNamespace:
      out += "<Namespace ";
      append_dict(out, v.ns().attrs, depth);
      out += '>';
      return;
    default:
      out += v.str();
  }
}

}  // namespace

std::string Value::str() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "";
    case Kind::kNone:
      return "None";
    case Kind::kBool:
      return num_.b ? "True" : "False";
    case Kind::kInt:
      return std::to_string(num_.i);
    case Kind::kFloat:
      return float_repr(num_.f);
    case Kind::kString:
      return str_;
    case Kind::kCallable:
      return fn_->repr();
    case Kind::kIterator:
      return "<" + iter().type_name + " object>";
    default: {
      std::string out;
      append_repr(out, *this, 0);
      return out;
    }
  }
}

std::string Value::repr() const {
  std::string out;
  append_repr(out, *this, 0);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Comparison

namespace {

bool equals_at(const Value& a, const Value& b, int depth);

bool dict_equals(const Dict& a, const Dict& b, int depth) {
  if (a.size() != b.size()) return false;
  for (const auto& [k, v] : a) {
    const Value* other = b.find(k);
    if (!other || !equals_at(v, *other, depth + 1)) return false;
  }
  return true;
}

bool equals_at(const Value& a, const Value& b, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() == b.as_float();
    return a.as_int() == b.as_int();
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Kind::kUndefined:
    case Kind::kNone:
      return true;
    case Kind::kString:
      return a.as_string() == b.as_string();
    case Kind::kList:
    case Kind::kTuple: {
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i) {
        if (!equals_at(x[i], y[i], depth + 1)) return false;
      }
      return true;
    }
    case Kind::kDict:
      return dict_equals(a.dict(), b.dict(), depth);
    case Kind::kView: {
      // keys and items views compare as sets; values views only by identity.
      if (std::string_view(a.type_name()) != b.type_name() ||
          std::string_view(a.type_name()) == "dict_values") {
        return a.same_as(b);
      }
      const ValueList& x = a.items();
      const ValueList& y = b.items();
      if (x.size() != y.size()) return false;
      for (const Value& item : x) {
        bool found = false;
        for (const Value& other : y) found = found || equals_at(item, other, depth + 1);
        if (!found) return false;
      }
      return true;
    }
    default:
      return a.same_as(b);
  }
}

int compare_at(const Value& a, const Value& b, const char* op, int depth) {
  check_depth(depth);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) {
      double x = a.as_float(), y = b.as_float();
      return x < y ? -1 : (y < x ? 1 : 0);
    }
    int64_t x = a.as_int(), y = b.as_int();
    return x < y ? -1 : (y < x ? 1 : 0);
  }
  if (a.is_undefined()) a.fail_undefined();
  if (b.is_undefined()) b.fail_undefined();
  if (a.is_string() && b.is_string()) return a.as_string().compare(b.as_string());  // code points
  if (a.kind() == b.kind() && a.is_sequence()) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
      if (!equals_at(x[i], y[i], depth + 1)) return compare_at(x[i], y[i], op, depth + 1);
    }
    return x.size() < y.size() ? -1 : (y.size() < x.size() ? 1 : 0);
  }
  throw_type_error(std::string("'") + op + "' not supported between instances of '" +
                   a.type_name() + "' and '" + b.type_name() + "'");
}

}  // namespace

bool equals(const Value& a, const Value& b) {
  return equals_at(a, b, 0);
}

int compare_order(const Value& a, const Value& b, const char* op) {
  return compare_at(a, b, op, 0);
}

void check_hashable(const Value& v) {
  switch (v.kind()) {
    case Kind::kList:
    case Kind::kDict:
    case Kind::kNamespace:
      throw_type_error(std::string("unhashable type: '") + v.type_name() + "'");
    case Kind::kTuple:
      for (const Value& item : v.items()) check_hashable(item);
      return;
    default:
      return;
  }
}

// ---------------------------------------------------------------------------------------------
// Dict

const Value* Dict::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.as_string()));
  for (const auto& entry : entries_) {
    if (equals(entry.first, key)) return &entry.second;
  }
  return nullptr;
}

const Value* Dict::find(std::string_view key) const {
  if (!string_index_.empty()) {
    auto it = string_index_.find(key);
    return it == string_index_.end() ? nullptr : &entries_[it->second].second;
  }
  for (const auto& entry : entries_) {
    if (entry.first.is_string() && entry.first.as_string() == key) return &entry.second;
  }
  return nullptr;
}

void Dict::build_index() {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].first.is_string()) string_index_.emplace(entries_[i].first.as_string(), i);
  }
}

void Dict::set(Value key, Value value) {
  check_hashable(key);
  if (key.is_string() && !string_index_.empty()) {
    auto it = string_index_.find(std::string_view(key.as_string()));
    if (it != string_index_.end()) {
      entries_[it->second].second = std::move(value);
      return;
    }
    string_index_.emplace(key.as_string(), entries_.size());
    entries_.emplace_back(std::move(key), std::move(value));
    return;
  }
  for (auto& entry : entries_) {
    if (equals(entry.first, key)) {
      entry.second = std::move(value);
      return;
    }
  }
  entries_.emplace_back(std::move(key), std::move(value));
  if (entries_.size() == kIndexFrom) build_index();
}

// ---------------------------------------------------------------------------------------------
// JSON

namespace {

void append_json_string(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  size_t pos = 0;
  while (pos < s.size()) {
    size_t start = pos;
    char32_t c = utf8::decode(s, pos);
    char buf[16];
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    if (c < 0x20) {
      std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      out += buf;
    } else if (ensure_ascii && c >= 0x80) {
      if (c >= 0x10000) {
        unsigned v = static_cast<unsigned>(c) - 0x10000;
        std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
      } else {
        std::snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned>(c));
      }
      out += buf;
    } else {
      out.append(s.substr(start, pos - start));
    }
  }
  out += '"';
}

std::string json_float(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v < 0 ? "-Infinity" : "Infinity";
  return float_repr(v);
}

std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Kind::kString:
      return k.as_string();
    case Kind::kBool:
      return k.as_bool() ? "true" : "false";
    case Kind::kInt:
      return std::to_string(k.as_int());
    case Kind::kFloat:
      return json_float(k.as_float());
    case Kind::kNone:
      return "null";
    default:
      throw_type_error(std::string("keys must be str, int, float, bool or None, not ") +
                       k.type_name());
  }
}

struct JsonWriter {
  const JsonDumpOptions& opt;
  std::string out;

  void newline(int level) {
    out += '\n';
    for (int i = 0; i < level; ++i) out += opt.indent;
  }

  void write(const Value& v, int level) {
    check_depth(level);
    switch (v.kind()) {
      case Kind::kNone:
        out += "null";
        return;
      case Kind::kBool:
        out += v.as_bool() ? "true" : "false";
        return;
      case Kind::kInt:
        out += std::to_string(v.as_int());
        return;
      case Kind::kFloat:
        out += json_float(v.as_float());
        return;
      case Kind::kString:
        append_json_string(out, v.as_string(), opt.ensure_ascii);
        return;
      case Kind::kList:
      case Kind::kTuple:
        write_list(v.items(), level);
        return;
      case Kind::kDict:
        write_dict(v.dict(), level);
        return;
      default:
        throw_type_error(std::string("Object of type ") + v.type_name() +
                         " is not JSON serializable");
    }
  }

  void write_list(const ValueList& items, int level) {
    if (items.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    for (size_t i = 0; i < items.size(); ++i) {
      if (i) out += opt.item_separator;
      if (opt.has_indent) newline(level + 1);
      write(items[i], level + 1);
    }
    if (opt.has_indent) newline(level);
    out += ']';
  }

  void write_dict(const Dict& d, int level) {
    if (d.empty()) {
      out += "{}";
      return;
    }
    std::vector<const Dict::Entry*> entries;
    for (const auto& e : d) entries.push_back(&e);
    if (opt.sort_keys) {
      std::stable_sort(
          entries.begin(), entries.end(),
          [](const Dict::Entry* a, const Dict::Entry* b) { return less_than(a->first, b->first); });
    }
    out += '{';
    for (size_t i = 0; i < entries.size(); ++i) {
      if (i) out += opt.item_separator;
      if (opt.has_indent) newline(level + 1);
      append_json_string(out, json_key(entries[i]->first), opt.ensure_ascii);
      out += opt.key_separator;
      write(entries[i]->second, level + 1);
    }
    if (opt.has_indent) newline(level);
    out += '}';
  }
};

template <typename Json>
Value from_json_impl(const Json& j, int depth) {
  check_depth(depth);
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::none();
    case nlohmann::json::value_t::boolean:
      return Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return Value(static_cast<double>(u));
      return Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& item : j) items.push_back(from_json_impl(item, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) {
        d.set(Value(it.key()), from_json_impl(it.value(), depth + 1));
      }
      return Value::dict(std::move(d));
    }
    default:
      return Value::none();  // binary / discarded: not produced by JSON text
  }
}

nlohmann::ordered_json to_json_impl(const Value& v, int depth) {
  check_depth(depth);
  switch (v.kind()) {
    case Kind::kNone:
    case Kind::kUndefined:
      return nullptr;
    case Kind::kBool:
      return v.as_bool();
    case Kind::kInt:
      return v.as_int();
    case Kind::kFloat:
      return v.as_float();
    case Kind::kString:
      return v.as_string();
    case Kind::kList:
    case Kind::kTuple: {
      nlohmann::ordered_json arr = nlohmann::ordered_json::array();
      for (const Value& item : v.items()) arr.push_back(to_json_impl(item, depth + 1));
      return arr;
    }
    case Kind::kDict: {
      nlohmann::ordered_json obj = nlohmann::ordered_json::object();
      for (const auto& [k, item] : v.dict()) obj[json_key(k)] = to_json_impl(item, depth + 1);
      return obj;
    }
    case Kind::kNamespace: {
      nlohmann::ordered_json obj = nlohmann::ordered_json::object();
      for (const auto& [k, item] : v.ns().attrs) obj[json_key(k)] = to_json_impl(item, depth + 1);
      return obj;
    }
    default:
      return v.str();
  }
}

}  // namespace

std::string json_dumps(const Value& v, const JsonDumpOptions& options) {
  JsonWriter writer{options, {}};
  writer.write(v, 0);
  return std::move(writer.out);
}

Value from_json(const nlohmann::ordered_json& j) {
  return from_json_impl(j, 0);
}

Value from_json(const nlohmann::json& j) {
  return from_json_impl(j, 0);
}

nlohmann::ordered_json to_json(const Value& v) {
  return to_json_impl(v, 0);
}

}  // namespace cvllm::jinja
