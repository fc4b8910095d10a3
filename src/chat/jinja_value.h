// The dynamic value of the Jinja engine, with Python's semantics as jinja2 exposes them to chat
// templates: undefined, none, bool, int, float, str, list, tuple, dict (insertion-ordered),
// callables (macros, builtins, bound methods, loop objects), namespaces and one-shot iterators
// (what jinja2's generator-returning filters such as `map` and `select` produce).
//
// Lists, tuples and dicts are immutable once built (transformers renders in jinja2's
// ImmutableSandboxedEnvironment, where `append`/`update`/... are refused), so they are shared by
// pointer and copying a Value is cheap. Namespaces are the one mutable container
// (`{% set ns.x = ... %}`) and are shared by reference, as in Python.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cvllm::jinja {

enum class Kind : uint8_t {
  kUndefined,
  kNone,
  kBool,
  kInt,
  kFloat,
  kString,
  kList,
  kTuple,
  kDict,
  kCallable,
  kNamespace,
  kIterator,
  kView,  // dict.keys() / values() / items(): iterable, sized, not indexable
};

class Value;
class Dict;
class Callable;
struct ListObject;
struct DictObject;
struct NamespaceObject;
struct IteratorObject;

using ValueList = std::vector<Value>;

// The exception every engine error travels as until Template::render turns it into a
// cvllm::ValueError "chat template line N: ...". `type` is the Python exception name jinja2 would
// raise (UndefinedError, TypeError, TemplateError, ...); `line` is filled in while unwinding.
class JinjaError : public std::exception {
 public:
  JinjaError(std::string type, std::string message, int line = 0)
      : type_(std::move(type)), message_(std::move(message)), line_(line) {}
  const char* what() const noexcept override { return message_.c_str(); }
  const std::string& type() const { return type_; }
  const std::string& message() const { return message_; }
  int line() const { return line_; }
  void set_line(int line) { line_ = line; }

 private:
  std::string type_;
  std::string message_;
  int line_;
};

[[noreturn]] void throw_error(const char* type, std::string message);
[[noreturn]] void throw_type_error(std::string message);

class Value {
 public:
  Value() = default;  // undefined
  Value(bool b) : kind_(Kind::kBool) { num_.b = b; }
  Value(int v) : kind_(Kind::kInt) { num_.i = v; }
  Value(int64_t v) : kind_(Kind::kInt) { num_.i = v; }
  Value(double v) : kind_(Kind::kFloat) { num_.f = v; }
  Value(std::string s) : kind_(Kind::kString), str_(std::move(s)) {}
  Value(std::string_view s) : kind_(Kind::kString), str_(s) {}
  Value(const char* s) : kind_(Kind::kString), str_(s) {}

  // `hint` is the message raised when the undefined value is used in a way that needs a value
  // (jinja2's `_undefined_message`); `exception` the Python exception name for that error.
  static Value undefined(std::string hint, bool security_error = false);
  static Value none();
  static Value list(ValueList items);
  static Value tuple(ValueList items);
  static Value dict(Dict d);
  static Value callable(std::shared_ptr<Callable> fn);
  static Value make_namespace(Dict attrs);
  static Value iterator(ValueList items, std::string type_name = "generator");
  // A dict view; `view_name` is "dict_keys", "dict_values" or "dict_items".
  static Value view(ValueList items, const char* view_name);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }  // bool excluded, as jinja2's `integer` test
  bool is_integral() const { return kind_ == Kind::kInt || kind_ == Kind::kBool; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return is_integral() || is_float(); }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kTuple; }
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_iterator() const { return kind_ == Kind::kIterator; }
  bool is_view() const { return kind_ == Kind::kView; }

  bool as_bool() const { return num_.b; }
  int64_t as_int() const { return kind_ == Kind::kBool ? int64_t(num_.b) : num_.i; }  // integral
  double as_float() const;                                                            // any number
  const std::string& as_string() const { return str_; }
  const ValueList& items() const;  // list, tuple or view
  const Dict& dict() const;
  const std::shared_ptr<Callable>& callable() const { return fn_; }
  NamespaceObject& ns() const;
  IteratorObject& iter() const;
  const std::string& undefined_hint() const { return str_; }
  const char* undefined_exception() const { return num_.i ? "SecurityError" : "UndefinedError"; }
  // Raises the error this undefined value stands for (jinja2's _fail_with_undefined_error).
  [[noreturn]] void fail_undefined() const;

  bool truthy() const;            // Python bool()
  std::string str() const;        // Python str() (jinja2 prints this; undefined prints "")
  std::string repr() const;       // Python repr()
  const char* type_name() const;  // Python type(x).__name__
  // jinja2's object_type_repr: "dict object", "None", ...
  std::string object_type_repr() const;
  // Identity for containers, equality of value for scalars (Python `is` on small values).
  bool same_as(const Value& other) const;

 private:
  friend struct ValueAccess;
  Kind kind_ = Kind::kUndefined;
  union {
    bool b;
    int64_t i;
    double f;
  } num_{};
  std::string str_;            // string value, or the undefined hint
  std::shared_ptr<void> obj_;  // list/tuple/dict/namespace/iterator storage
  std::shared_ptr<Callable> fn_;
};

// Insertion-ordered mapping with Python key semantics (1 == 1.0 == True).
class Dict {
 public:
  using Entry = std::pair<Value, Value>;
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  // Inserts or replaces (keeping the first position, as a Python dict does). Throws TypeError
  // for unhashable keys.
  void set(Value key, Value value);
  size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  const std::vector<Entry>& entries() const { return entries_; }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }

 private:
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  // Position of each string key, kept once the dict is big enough for linear search to cost.
  static constexpr size_t kIndexFrom = 16;
  void build_index();
  std::vector<Entry> entries_;
  std::unordered_map<std::string, size_t, StringHash, std::equal_to<>> string_index_;
};

// Containers record how deeply they nest, so that building one too deep fails at once: values
// nested thousands deep would overflow the stack when printed, compared or destroyed.
struct ListObject {
  ValueList items;
  const char* view_name = nullptr;  // set for dict views
  int depth = 1;
};
struct DictObject {
  Dict dict;
  int depth = 1;
};
struct NamespaceObject {
  Dict attrs;
};
// A one-shot iterator: items are consumed once, as a Python generator's are.
struct IteratorObject {
  ValueList items;
  size_t pos = 0;
  std::string type_name;
  int depth = 1;
};

class Interpreter;

struct CallArgs {
  ValueList args;
  std::vector<std::pair<std::string, Value>> kwargs;
};

// Anything a template can call: macros, builtins (range, namespace, ...), bound methods of
// str/dict/list, loop objects. `get_attr` serves `macro.name`, `loop.index`, `cycler.next`...
class Callable {
 public:
  virtual ~Callable() = default;
  virtual Value call(Interpreter& interp, CallArgs& args) = 0;
  virtual std::string repr() const = 0;
  virtual const char* type_name() const { return "function"; }
  virtual Value get_attr(const std::string& name) const;
};

// Python `==` (never raises).
bool equals(const Value& a, const Value& b);
// Python ordering for the comparison `op` ("<", "<=", ">", ">="): negative, zero or positive.
// Throws TypeError "'<' not supported between instances of 'A' and 'B'" naming `op`.
int compare_order(const Value& a, const Value& b, const char* op = "<");
inline bool less_than(const Value& a, const Value& b) {
  return compare_order(a, b) < 0;
}
// Throws TypeError "unhashable type: 'list'" unless `v` can be a dict key.
void check_hashable(const Value& v);

// Python float.__repr__ (shortest round-trip, "1e-05", "1e+16", "1.0", "inf", "nan").
std::string float_repr(double v);
// Python repr() of a str.
std::string string_repr(std::string_view s);

// Python json.dumps as transformers' `tojson` calls it. With an indent, Python's default item
// separator is "," instead of ", " (the caller sets it).
struct JsonDumpOptions {
  bool ensure_ascii = false;
  bool has_indent = false;  // indent=None is no newlines at all; indent=0 is newlines only
  std::string indent;       // the per-level indent string (Python: " " * n, or the given string)
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
std::string json_dumps(const Value& v, const JsonDumpOptions& options);

// Conversions to and from JSON. Objects keep their key order with ordered_json (use it for
// requests: Python keeps the order the client sent, which templates that iterate tool schemas
// show); plain nlohmann::json objects come out in its sorted order.
Value from_json(const nlohmann::ordered_json& j);
Value from_json(const nlohmann::json& j);
nlohmann::ordered_json to_json(const Value& v);

// Values nested deeper than this are refused (repr, comparison, JSON), as Python's recursion
// limit would.
constexpr int kMaxValueDepth = 512;

}  // namespace cvllm::jinja
