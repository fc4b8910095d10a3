// Registries of the built-in filters and tests (jinja2's defaults plus transformers' `tojson`),
// and the Python methods of str/dict/list values that templates call (`x.strip()`,
// `d.items()`...). The mutating methods of list and dict are refused as transformers' immutable
// sandbox refuses them.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "chat/jinja_value.h"

namespace cvllm::jinja {

class Interpreter;

using FilterFn = Value (*)(Interpreter& interp, const Value& operand, CallArgs& args);
using TestFn = bool (*)(Interpreter& interp, const Value& operand, CallArgs& args);

FilterFn find_filter(std::string_view name);
// range, dict, namespace, cycler, joiner (jinja2's, with transformers' dict and namespace),
// raise_exception and strftime_now (transformers', with the real clock).
const Dict& environment_globals();
TestFn find_test(std::string_view name);

// What `obj.name` gives for a built-in method name of obj's type: a bound method, an undefined
// carrying jinja2's SecurityError for methods that would mutate, or nullopt when `name` is not a
// method of that type.
std::optional<Value> lookup_method(const Value& obj, const std::string& name);

// Python's printf-style `fmt % args` (args: a tuple, a dict for %(name)s, or a single value).
std::string percent_format(const std::string& fmt, const Value& args);
// Python's str.format(*args, **kwargs).
std::string str_format(Interpreter& interp, const std::string& fmt, const CallArgs& args);

// Binds call arguments to a Python signature: names in order; positional args fill them first,
// then keywords. Unknown keywords or too many positionals raise TypeError naming `fn`.
// Unbound parameters come back as undefined values (check with is_undefined()).
struct BoundArgs {
  std::vector<Value> values;
  std::vector<bool> given;
  const Value& operator[](size_t i) const { return values[i]; }
  bool has(size_t i) const { return given[i]; }
};
BoundArgs bind_args(const char* fn, const CallArgs& args, std::initializer_list<const char*> names,
                    size_t num_required = 0);

// Python int(x) conversion of a value (raises TypeError/ValueError like Python).
int64_t to_python_int(const Value& v);
// Python int(text, base) / float(text) parsing; nullopt where Python raises ValueError.
std::optional<int64_t> parse_python_int(std::string_view text, int base);
std::optional<double> parse_python_float(std::string_view text);
int64_t expect_int(const Value& v, const char* what);

}  // namespace cvllm::jinja
