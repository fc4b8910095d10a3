#include "chat/jinja_ops.h"

#include <cmath>

#include "chat/jinja_builtins.h"
#include "chat/jinja_pystr.h"

namespace cvllm::jinja {

namespace {

const char* op_symbol(BinaryOp op) {
  switch (op) {
    case BinaryOp::kAdd:
      return "+";
    case BinaryOp::kSub:
      return "-";
    case BinaryOp::kMul:
      return "*";
    case BinaryOp::kDiv:
      return "/";
    case BinaryOp::kFloorDiv:
      return "//";
    case BinaryOp::kMod:
      return "%";
    case BinaryOp::kPow:
      return "** or pow()";
    default:
      return "?";
  }
}

[[noreturn]] void unsupported(BinaryOp op, const Value& a, const Value& b) {
  throw_type_error(std::string("unsupported operand type(s) for ") + op_symbol(op) + ": '" +
                   a.type_name() + "' and '" + b.type_name() + "'");
}

[[noreturn]] void overflow() {
  throw_error("OverflowError", "integer overflow: template integers are limited to 64 bits");
}

[[noreturn]] void zero_division(const char* message) {
  throw_error("ZeroDivisionError", message);
}

void check_built_size(size_t size, size_t max_size) {
  if (size > max_size) {
    throw_error("LimitError", "value too large: " + std::to_string(size) +
                                  " exceeds the limit of " + std::to_string(max_size));
  }
}

int64_t floor_div(int64_t a, int64_t b) {
  if (a == INT64_MIN && b == -1) overflow();
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t floor_mod(int64_t a, int64_t b) {
  if (b == -1) return 0;
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// CPython's float divmod: floor quotient and a remainder with the divisor's sign.
std::pair<double, double> float_divmod(double vx, double wx) {
  double mod = std::fmod(vx, wx);
  double div = (vx - mod) / wx;
  if (mod != 0.0) {
    if ((wx < 0) != (mod < 0)) {
      mod += wx;
      div -= 1.0;
    }
  } else {
    mod = std::copysign(0.0, wx);
  }
  double floordiv;
  if (div != 0.0) {
    floordiv = std::floor(div);
    if (div - floordiv > 0.5) floordiv += 1.0;
  } else {
    floordiv = std::copysign(0.0, vx / wx);
  }
  return {floordiv, mod};
}

Value int_pow(int64_t base, int64_t exp) {
  if (exp < 0) {
    if (base == 0) zero_division("0.0 cannot be raised to a negative power");
    return Value(std::pow(static_cast<double>(base), static_cast<double>(exp)));
  }
  int64_t result = 1;
  while (exp > 0) {
    if (exp & 1) result = checked_mul(result, base);
    exp >>= 1;
    if (exp > 0) base = checked_mul(base, base);
  }
  return Value(result);
}

Value repeat(const Value& seq, int64_t times, size_t max_size) {
  if (times < 0) times = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty())
      check_built_size(static_cast<size_t>(checked_mul(static_cast<int64_t>(s.size()), times)),
                       max_size);
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(times));
    for (int64_t i = 0; i < times; ++i) out += s;
    return Value(std::move(out));
  }
  const ValueList& items = seq.items();
  if (!items.empty())
    check_built_size(static_cast<size_t>(checked_mul(static_cast<int64_t>(items.size()), times)),
                     max_size);
  ValueList out;
  for (int64_t i = 0; i < times; ++i) out.insert(out.end(), items.begin(), items.end());
  return seq.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
}

Value add(const Value& a, const Value& b, size_t max_size) {
  if (a.is_integral() && b.is_integral()) return Value(checked_add(a.as_int(), b.as_int()));
  if (a.is_number() && b.is_number()) return Value(a.as_float() + b.as_float());
  if (a.is_string() && b.is_string()) {
    check_built_size(a.as_string().size() + b.as_string().size(), max_size);
    return Value(a.as_string() + b.as_string());
  }
  if (a.kind() == b.kind() && a.is_sequence()) {
    check_built_size(a.items().size() + b.items().size(), max_size);
    ValueList out = a.items();
    out.insert(out.end(), b.items().begin(), b.items().end());
    return a.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  if (a.is_string() || a.is_sequence()) {
    throw_type_error(std::string("can only concatenate ") + a.type_name() + " (not \"" +
                     b.type_name() + "\") to " + a.type_name());
  }
  unsupported(BinaryOp::kAdd, a, b);
}

Value multiply(const Value& a, const Value& b, size_t max_size) {
  if (a.is_integral() && b.is_integral()) return Value(checked_mul(a.as_int(), b.as_int()));
  if (a.is_number() && b.is_number()) return Value(a.as_float() * b.as_float());
  const Value* seq = (a.is_string() || a.is_sequence())   ? &a
                     : (b.is_string() || b.is_sequence()) ? &b
                                                          : nullptr;
  if (seq) {
    const Value& n = seq == &a ? b : a;
    if (n.is_integral()) return repeat(*seq, n.as_int(), max_size);
    throw_type_error(std::string("can't multiply sequence by non-int of type '") + n.type_name() +
                     "'");
  }
  unsupported(BinaryOp::kMul, a, b);
}

Value divide(BinaryOp op, const Value& a, const Value& b) {
  if (!(a.is_number() && b.is_number())) unsupported(op, a, b);
  bool integral = a.is_integral() && b.is_integral();
  if (op == BinaryOp::kDiv) {
    if (b.as_float() == 0.0)
      zero_division(integral ? "division by zero" : "float division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (integral) {
    if (b.as_int() == 0) {
      zero_division(op == BinaryOp::kFloorDiv ? "integer division or modulo by zero"
                                              : "integer modulo by zero");
    }
    return Value(op == BinaryOp::kFloorDiv ? floor_div(a.as_int(), b.as_int())
                                           : floor_mod(a.as_int(), b.as_int()));
  }
  if (b.as_float() == 0.0) {
    zero_division(op == BinaryOp::kFloorDiv ? "float floor division by zero" : "float modulo");
  }
  auto [q, r] = float_divmod(a.as_float(), b.as_float());
  return Value(op == BinaryOp::kFloorDiv ? q : r);
}

Value power(const Value& a, const Value& b) {
  if (!(a.is_number() && b.is_number())) unsupported(BinaryOp::kPow, a, b);
  if (a.is_integral() && b.is_integral()) return int_pow(a.as_int(), b.as_int());
  double x = a.as_float(), y = b.as_float();
  if (x == 0.0 && y < 0) zero_division("0.0 cannot be raised to a negative power");
  if (x < 0 && y != std::floor(y)) throw_error("ValueError", "complex results are not supported");
  double r = std::pow(x, y);
  if (std::isinf(r) && !std::isinf(x) && !std::isinf(y))
    throw_error("OverflowError", "(34, 'Numerical result out of range')");
  return Value(r);
}

std::optional<int64_t> slice_bound(const Value& v) {
  if (v.is_none() || v.is_undefined()) return std::nullopt;
  if (v.is_integral()) return v.as_int();
  throw_type_error("slice indices must be integers or None or have an __index__ method");
}

Value missing_item(const Value& obj, const Value& key) {
  return Value::undefined(obj.object_type_repr() + " has no element " + key.repr());
}

}  // namespace

int64_t checked_add(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) overflow();
  return r;
}

int64_t checked_mul(int64_t a, int64_t b) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) overflow();
  return r;
}

Value binary_op(BinaryOp op, const Value& a, const Value& b, size_t max_size) {
  if (a.is_undefined()) a.fail_undefined();
  // str % x is str's own operation, tried first; it accepts an undefined argument (printed
  // empty), so the undefined's error only comes for other operators.
  if (b.is_undefined() && !(op == BinaryOp::kMod && a.is_string())) b.fail_undefined();
  switch (op) {
    case BinaryOp::kAdd:
      return add(a, b, max_size);
    case BinaryOp::kSub:
      if (a.is_integral() && b.is_integral()) {
        int64_t r;
        if (__builtin_sub_overflow(a.as_int(), b.as_int(), &r)) overflow();
        return Value(r);
      }
      if (a.is_number() && b.is_number()) return Value(a.as_float() - b.as_float());
      unsupported(op, a, b);
    case BinaryOp::kMul:
      return multiply(a, b, max_size);
    case BinaryOp::kDiv:
    case BinaryOp::kFloorDiv:
      return divide(op, a, b);
    case BinaryOp::kMod:
      if (a.is_string()) {
        std::string out = percent_format(a.as_string(), b);
        check_built_size(out.size(), max_size);
        return Value(std::move(out));
      }
      return divide(op, a, b);
    case BinaryOp::kPow:
      return power(a, b);
    default:
      throw_error("TemplateRuntimeError", "bad operator");
  }
}

Value unary_op(UnaryOp op, const Value& v) {
  if (op == UnaryOp::kNot) return Value(!v.truthy());
  if (v.is_undefined()) v.fail_undefined();
  if (v.is_integral()) {
    if (op == UnaryOp::kPos) return Value(v.as_int());
    if (v.as_int() == INT64_MIN) overflow();
    return Value(-v.as_int());
  }
  if (v.is_float()) return Value(op == UnaryOp::kPos ? v.as_float() : -v.as_float());
  throw_type_error(std::string("bad operand type for unary ") + (op == UnaryOp::kNeg ? "-" : "+") +
                   ": '" + v.type_name() + "'");
}

bool compare_op(CompareOp op, const Value& a, const Value& b) {
  switch (op) {
    case CompareOp::kEq:
      return equals(a, b);
    case CompareOp::kNe:
      return !equals(a, b);
    case CompareOp::kIn:
      return contains(b, a);
    case CompareOp::kNotIn:
      return !contains(b, a);
    default:
      break;
  }
  if (a.is_number() && b.is_number() && (a.is_float() || b.is_float())) {
    double x = a.as_float(), y = b.as_float();  // direct, so NaN compares false as in Python
    switch (op) {
      case CompareOp::kLt:
        return x < y;
      case CompareOp::kLe:
        return x <= y;
      case CompareOp::kGt:
        return x > y;
      default:
        return x >= y;
    }
  }
  const char* symbol = op == CompareOp::kLt   ? "<"
                       : op == CompareOp::kLe ? "<="
                       : op == CompareOp::kGt ? ">"
                                              : ">=";
  int c = compare_order(a, b, symbol);
  switch (op) {
    case CompareOp::kLt:
      return c < 0;
    case CompareOp::kLe:
      return c <= 0;
    case CompareOp::kGt:
      return c > 0;
    default:
      return c >= 0;
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Kind::kUndefined:
      return false;
    case Kind::kString:
      if (!item.is_string()) {
        throw_type_error(std::string("'in <string>' requires string as left operand, not ") +
                         item.type_name());
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Kind::kView:
      // keys and items views look up by hash, as sets do.
      if (std::string_view(container.type_name()) == "dict_keys") check_hashable(item);
      if (std::string_view(container.type_name()) == "dict_items" && item.is_tuple() &&
          item.items().size() == 2) {
        check_hashable(item.items()[0]);
      }
      [[fallthrough]];
    case Kind::kList:
    case Kind::kTuple:
      for (const Value& v : container.items()) {
        if (equals(v, item)) return true;
      }
      return false;
    case Kind::kDict:
      check_hashable(item);
      return container.dict().find(item) != nullptr;
    case Kind::kIterator: {
      IteratorObject& it = container.iter();
      while (it.pos < it.items.size()) {
        if (equals(it.items[it.pos++], item)) return true;
      }
      return false;
    }
    default:
      throw_type_error(std::string("argument of type '") + container.type_name() +
                       "' is not iterable");
  }
}

int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined:
      return 0;
    case Kind::kString:
      return static_cast<int64_t>(py::length(v.as_string()));
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kView:
      return static_cast<int64_t>(v.items().size());
    case Kind::kDict:
      return static_cast<int64_t>(v.dict().size());
    default:
      throw_type_error(std::string("object of type '") + v.type_name() + "' has no len()");
  }
}

Value get_attr(const Value& obj, const std::string& name) {
  if (obj.is_undefined()) obj.fail_undefined();
  if (name.size() > 4 && name.rfind("__", 0) == 0 && name.compare(name.size() - 2, 2, "__") == 0) {
    // Python would find the dunder attribute and the sandbox refuses it.
    return Value::undefined("access to attribute " + string_repr(name) + " of " +
                                string_repr(obj.type_name()) + " object is unsafe.",
                            true);
  }
  if (std::optional<Value> method = lookup_method(obj, name)) return *method;
  switch (obj.kind()) {
    case Kind::kDict:
      if (const Value* v = obj.dict().find(std::string_view(name))) return *v;
      break;
    case Kind::kNamespace:
      if (const Value* v = obj.ns().attrs.find(std::string_view(name))) return *v;
      break;
    case Kind::kCallable: {
      Value v = obj.callable()->get_attr(name);
      if (!v.is_undefined()) return v;
      break;
    }
    default:
      break;
  }
  return Value::undefined(string_repr(obj.object_type_repr()) + " has no attribute " +
                          string_repr(name));
}

Value get_item(const Value& obj, const Value& key) {
  if (obj.is_undefined()) obj.fail_undefined();
  switch (obj.kind()) {
    case Kind::kDict: {
      bool hashable = !(key.is_list() || key.is_dict() || key.is_namespace());
      if (hashable) {
        if (const Value* v = obj.dict().find(key)) return *v;
      }
      break;
    }
    case Kind::kList:
    case Kind::kTuple:
      if (key.is_integral()) {
        const ValueList& items = obj.items();
        int64_t i = key.as_int();
        if (i < 0) i += static_cast<int64_t>(items.size());
        if (i >= 0 && i < static_cast<int64_t>(items.size())) return items[static_cast<size_t>(i)];
      }
      break;
    case Kind::kString:
      if (key.is_integral()) {
        if (std::optional<std::string> c = py::char_at(obj.as_string(), key.as_int()))
          return Value(*c);
      }
      break;
    default:
      break;
  }
  if (key.is_string()) return get_attr(obj, key.as_string());  // same undefined as jinja2's
  return missing_item(obj, key);
}

Value get_slice(const Value& obj, const Value& start, const Value& stop, const Value& step_value) {
  if (obj.is_undefined()) obj.fail_undefined();
  if (!(obj.is_string() || obj.is_sequence())) {
    if (obj.is_dict()) throw_type_error("unhashable type: 'slice'");
    throw_type_error(std::string("'") + obj.type_name() + "' object is not subscriptable");
  }
  int64_t step = 1;
  if (!step_value.is_none() && !step_value.is_undefined()) {
    if (!step_value.is_integral()) {
      throw_type_error("slice indices must be integers or None or have an __index__ method");
    }
    step = step_value.as_int();
    if (step == 0) throw_error("ValueError", "slice step cannot be zero");
  }
  std::optional<int64_t> a = slice_bound(start), b = slice_bound(stop);
  if (obj.is_string()) return Value(py::slice(obj.as_string(), a, b, step));
  if (obj.is_sequence()) {
    const ValueList& items = obj.items();
    ValueList out;
    for (int64_t i : py::slice_indices(static_cast<int64_t>(items.size()), a, b, step)) {
      out.push_back(items[static_cast<size_t>(i)]);
    }
    return obj.is_tuple() ? Value::tuple(std::move(out)) : Value::list(std::move(out));
  }
  // jinja2 slices with Python's own subscription (not the environment's getitem), so the
  // error propagates.
  if (obj.is_dict()) throw_type_error("unhashable type: 'slice'");
  throw_type_error(std::string("'") + obj.type_name() + "' object is not subscriptable");
}

}  // namespace cvllm::jinja
