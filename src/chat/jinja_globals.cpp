// The global callables a chat template can use: jinja2's range/dict/namespace/cycler/joiner (with
// the sandbox's range limit and transformers' namespace rules) and transformers' raise_exception
// and strftime_now.
#include <sys/time.h>

#include <cstdio>
#include <ctime>

#include "chat/jinja_builtins.h"
#include "chat/jinja_interpreter.h"
#include "chat/jinja_ops.h"

namespace cvllm::jinja {

namespace {

constexpr int64_t kMaxRange = 100000;  // jinja2.sandbox.MAX_RANGE

class Builtin : public Callable {
 public:
  using Fn = Value (*)(Interpreter&, CallArgs&);
  Builtin(const char* name, Fn fn) : name_(name), fn_(fn) {}
  Value call(Interpreter& interp, CallArgs& args) override { return fn_(interp, args); }
  std::string repr() const override { return std::string("<function ") + name_ + ">"; }
  const char* type_name() const override { return "function"; }

 private:
  const char* name_;
  Fn fn_;
};

Value builtin_range(Interpreter& interp, CallArgs& args) {
  if (!args.kwargs.empty()) throw_type_error("range() takes no keyword arguments");
  if (args.args.empty() || args.args.size() > 3) {
    throw_type_error("range expected at most 3 arguments, got " + std::to_string(args.args.size()));
  }
  int64_t start = 0, stop, step = 1;
  if (args.args.size() == 1) {
    stop = expect_int(args.args[0], nullptr);
  } else {
    start = expect_int(args.args[0], nullptr);
    stop = expect_int(args.args[1], nullptr);
    if (args.args.size() == 3) step = expect_int(args.args[2], nullptr);
  }
  if (step == 0) throw_error("ValueError", "range() arg 3 must not be zero");
  int64_t count = 0;
  if (step > 0 && start < stop) count = (stop - start - 1) / step + 1;
  if (step < 0 && start > stop) count = (start - stop - 1) / (-step) + 1;
  if (count > kMaxRange) {
    throw_error("OverflowError",
                "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
  }
  interp.count_iterations(count);
  ValueList items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) items.emplace_back(start + i * step);
  return Value::list(std::move(items));
}

// dict(mapping_or_pairs, **kwargs) and namespace(...) share Python's dict() argument rules.
Dict dict_from_args(Interpreter& interp, const CallArgs& args, const char* fn) {
  if (args.args.size() > 1) {
    throw_type_error(std::string(fn) + " expected at most 1 argument, got " +
                     std::to_string(args.args.size()));
  }
  Dict d;
  if (!args.args.empty()) {
    const Value& src = args.args[0];
    if (src.is_dict()) {
      d = src.dict();
    } else if (src.is_namespace()) {
      d = src.ns().attrs;
    } else {
      for (const Value& pair : interp.iterate(src)) {
        ValueList kv = interp.iterate(pair);
        if (kv.size() != 2) {
          throw_error("ValueError", "dictionary update sequence element has length " +
                                        std::to_string(kv.size()) + "; 2 is required");
        }
        d.set(kv[0], kv[1]);
      }
    }
  }
  for (const auto& [k, v] : args.kwargs) d.set(Value(k), v);
  return d;
}

Value builtin_dict(Interpreter& interp, CallArgs& args) {
  return Value::dict(dict_from_args(interp, args, "dict"));
}

Value builtin_namespace(Interpreter& interp, CallArgs& args) {
  Dict attrs = dict_from_args(interp, args, "namespace");
  for (const auto& [k, v] : attrs) {
    if (k.is_string() && !k.as_string().empty() && k.as_string()[0] == '_') {
      throw_error("SecurityError",
                  "Chat templates cannot store underscore-prefixed attributes on a "
                  "namespace, but got " +
                      k.repr() + ". Please rename the attribute.");
    }
  }
  Value ns = Value::make_namespace(std::move(attrs));
  interp.track_namespace(ns);
  return ns;
}

Value builtin_raise_exception(Interpreter&, CallArgs& args) {
  std::string message = args.args.empty() ? std::string() : args.args[0].str();
  throw JinjaError("TemplateError", message);
}

class Cycler : public Callable, public std::enable_shared_from_this<Cycler> {
 public:
  explicit Cycler(ValueList items) : items_(std::move(items)) {}
  Value call(Interpreter&, CallArgs&) override {
    throw_type_error("'Cycler' object is not callable");
  }
  std::string repr() const override { return "<Cycler>"; }
  const char* type_name() const override { return "Cycler"; }
  Value get_attr(const std::string& name) const override;
  ValueList items_;
  size_t pos_ = 0;
};

class CyclerMethod : public Callable {
 public:
  CyclerMethod(std::shared_ptr<Cycler> c, bool next) : cycler_(std::move(c)), next_(next) {}
  Value call(Interpreter&, CallArgs&) override {
    if (!next_) {
      cycler_->pos_ = 0;
      return Value::none();
    }
    Value v = cycler_->items_[cycler_->pos_];
    cycler_->pos_ = (cycler_->pos_ + 1) % cycler_->items_.size();
    return v;
  }
  std::string repr() const override { return "<bound method Cycler>"; }

 private:
  std::shared_ptr<Cycler> cycler_;
  bool next_;
};

Value Cycler::get_attr(const std::string& name) const {
  if (name == "current") return items_[pos_];
  if (name == "next" || name == "reset") {
    auto self = std::const_pointer_cast<Cycler>(shared_from_this());
    return Value::callable(std::make_shared<CyclerMethod>(self, name == "next"));
  }
  return Value::undefined("");
}

Value builtin_cycler(Interpreter&, CallArgs& args) {
  if (args.args.empty()) throw_type_error("at least one item has to be provided");
  return Value::callable(std::make_shared<Cycler>(args.args));
}

class Joiner : public Callable {
 public:
  explicit Joiner(std::string sep) : sep_(std::move(sep)) {}
  Value call(Interpreter&, CallArgs&) override {
    if (!used_) {
      used_ = true;
      return Value("");
    }
    return Value(sep_);
  }
  std::string repr() const override { return "<Joiner>"; }
  const char* type_name() const override { return "Joiner"; }

 private:
  std::string sep_;
  bool used_ = false;
};

Value builtin_joiner(Interpreter&, CallArgs& args) {
  BoundArgs b = bind_args("joiner", args, {"sep"});
  return Value::callable(std::make_shared<Joiner>(b.has(0) ? b[0].str() : ", "));
}

class StrftimeNow : public Callable {
 public:
  explicit StrftimeNow(std::optional<NaiveDateTime> fixed) : fixed_(fixed) {}
  Value call(Interpreter&, CallArgs& args) override {
    BoundArgs b = bind_args("strftime_now", args, {"format"}, 1);
    if (!b[0].is_string())
      throw_type_error("strftime() argument 1 must be str, not " + std::string(b[0].type_name()));
    return Value(py_strftime(b[0].as_string(), fixed_ ? *fixed_ : NaiveDateTime::now_local()));
  }
  std::string repr() const override { return "<function strftime_now>"; }

 private:
  std::optional<NaiveDateTime> fixed_;
};

}  // namespace

NaiveDateTime NaiveDateTime::now_local() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  std::tm tm{};
  time_t secs = tv.tv_sec;
  localtime_r(&secs, &tm);
  return NaiveDateTime{
      tm.tm_year + 1900,           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
      static_cast<int>(tv.tv_usec)};
}

std::optional<NaiveDateTime> NaiveDateTime::parse(const std::string& text) {
  NaiveDateTime t;
  char sep = 0;
  int n = std::sscanf(text.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d", &t.year, &t.month, &t.day, &sep,
                      &t.hour, &t.minute, &t.second);
  if (n != 3 && n != 6 && n != 7) return std::nullopt;
  if (n > 3 && sep != ' ' && sep != 'T') return std::nullopt;
  size_t dot = text.find('.');
  if (n == 7 && dot != std::string::npos) {
    std::string frac = text.substr(dot + 1, 6);
    while (frac.size() < 6) frac += '0';
    t.microsecond = std::atoi(frac.c_str());
  }
  if (t.month < 1 || t.month > 12 || t.day < 1 || t.day > 31 || t.hour > 23 || t.minute > 59 ||
      t.second > 59) {
    return std::nullopt;
  }
  return t;
}

std::string py_strftime(const std::string& format, const NaiveDateTime& t) {
  // Python expands %f itself and gives %z/%Z as empty for naive datetimes; the rest is C's
  // strftime in the "C" locale, as CPython calls it.
  std::string fmt;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] == '%' && i + 1 < format.size()) {
      char c = format[i + 1];
      if (c == 'f') {
        char buf[16];
        std::snprintf(buf, sizeof(buf), "%06d", t.microsecond);
        fmt += buf;
        ++i;
        continue;
      }
      if (c == 'z' || c == 'Z') {
        ++i;
        continue;
      }
      fmt += format[i];
      fmt += c;
      ++i;
      continue;
    }
    fmt += format[i];
  }
  std::tm tm{};
  tm.tm_year = t.year - 1900;
  tm.tm_mon = t.month - 1;
  tm.tm_mday = t.day;
  tm.tm_hour = t.hour;
  tm.tm_min = t.minute;
  tm.tm_sec = t.second;
  std::tm norm = tm;
  time_t epoch = timegm(&norm);  // fills weekday and day of year
  (void)epoch;
  tm.tm_wday = norm.tm_wday;
  tm.tm_yday = norm.tm_yday;
  tm.tm_isdst = -1;
  if (fmt.empty()) return "";
  std::string out(fmt.size() * 4 + 64, '\0');
  for (int attempt = 0; attempt < 6; ++attempt) {
    size_t n = std::strftime(out.data(), out.size(), fmt.c_str(), &tm);
    if (n > 0) {
      out.resize(n);
      return out;
    }
    out.resize(out.size() * 4);
  }
  return "";  // the expansion is empty (e.g. only %p in a locale without it)
}

Value make_raise_exception() {
  return Value::callable(std::make_shared<Builtin>("raise_exception", builtin_raise_exception));
}

Value make_strftime_now(std::optional<NaiveDateTime> fixed_now) {
  return Value::callable(std::make_shared<StrftimeNow>(fixed_now));
}

const Dict& environment_globals() {
  static const Dict globals = [] {
    Dict d;
    d.set(Value("range"), Value::callable(std::make_shared<Builtin>("range", builtin_range)));
    d.set(Value("dict"), Value::callable(std::make_shared<Builtin>("dict", builtin_dict)));
    d.set(Value("namespace"),
          Value::callable(std::make_shared<Builtin>("namespace", builtin_namespace)));
    d.set(Value("cycler"), Value::callable(std::make_shared<Builtin>("cycler", builtin_cycler)));
    d.set(Value("joiner"), Value::callable(std::make_shared<Builtin>("joiner", builtin_joiner)));
    d.set(Value("raise_exception"), make_raise_exception());
    d.set(Value("strftime_now"), make_strftime_now(std::nullopt));
    return d;
  }();
  return globals;
}

}  // namespace cvllm::jinja
