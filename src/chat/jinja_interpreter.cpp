#include "chat/jinja_interpreter.h"

#include <algorithm>

#include "chat/jinja_builtins.h"
#include "chat/jinja_ops.h"
#include "chat/jinja_pystr.h"

namespace cvllm::jinja {

// A scope. Lookups walk the parent chain, then the render variables, then the environment's
// globals. Frames are shared so that macros can keep (weakly) the scope they were defined in.
struct Frame {
  std::vector<std::pair<std::string, Value>> vars;
  FramePtr parent;

  const Value* find_local(const std::string& name) const {
    for (const auto& [k, v] : vars) {
      if (k == name) return &v;
    }
    return nullptr;
  }
  void set(const std::string& name, Value value) {
    for (auto& [k, v] : vars) {
      if (k == name) {
        v = std::move(value);
        return;
      }
    }
    vars.emplace_back(name, std::move(value));
  }
};

namespace {

// RAII guard for the evaluation depth (C++ recursion) and the macro call depth.
struct DepthGuard {
  int& depth;
  DepthGuard(int& d, int limit) : depth(d) {
    if (++depth > limit) {
      --depth;
      throw_error("RecursionError",
                  "maximum recursion depth exceeded while rendering the template");
    }
  }
  ~DepthGuard() { --depth; }
};

class MacroCallable : public Callable {
 public:
  MacroCallable(const MacroDef* def, std::weak_ptr<Frame> closure)
      : def_(def), closure_(std::move(closure)) {}
  Value call(Interpreter& interp, CallArgs& args) override {
    return interp.call_macro(*def_, closure_, args);
  }
  std::string repr() const override { return "<Macro '" + def_->name + "'>"; }
  const char* type_name() const override { return "Macro"; }
  Value get_attr(const std::string& name) const override {
    if (name == "name") return Value(def_->name);
    if (name == "arguments") {
      ValueList params(def_->params.begin(), def_->params.end());
      return Value::tuple(std::move(params));
    }
    if (name == "catch_kwargs") return Value(def_->uses_kwargs);
    if (name == "catch_varargs") return Value(def_->uses_varargs);
    if (name == "caller") return Value(def_->uses_caller);
    return Value::undefined("");
  }

 private:
  const MacroDef* def_;
  std::weak_ptr<Frame> closure_;
};

// jinja2's LoopContext. Fields are updated in place as the loop advances (a template that keeps
// `loop` in a variable sees it move on, as in jinja2).
class LoopObject : public Callable, public std::enable_shared_from_this<LoopObject> {
 public:
  LoopObject(const ForStmt* stmt, const FramePtr& frame, ValueList items, int depth0)
      : stmt_(stmt), frame_(frame), items_(std::move(items)), depth0_(depth0) {}

  const ValueList& items() const { return items_; }
  void set_index(size_t i) { index0_ = i; }

  Value call(Interpreter& interp, CallArgs& args) override {
    if (!stmt_->recursive) {
      throw_type_error("The loop must have the 'recursive' marker to be called recursively.");
    }
    if (args.args.size() != 1 || !args.kwargs.empty())
      throw_type_error("loop() takes exactly one argument");
    FramePtr frame = frame_.lock();
    if (!frame) throw_error("TemplateRuntimeError", "the loop has ended");
    return Value(interp.run_loop(*stmt_, frame, args.args[0], depth0_ + 1));
  }
  std::string repr() const override {
    return "<LoopContext " + std::to_string(index0_ + 1) + "/" + std::to_string(items_.size()) +
           ">";
  }
  const char* type_name() const override { return "LoopContext"; }
  Value get_attr(const std::string& name) const override;

 private:
  friend class LoopMethod;
  const ForStmt* stmt_;
  std::weak_ptr<Frame> frame_;  // weak: a loop kept in a namespace must not keep its scope alive
  ValueList items_;
  int depth0_;
  size_t index0_ = 0;
  std::optional<ValueList> last_changed_;
};

class LoopMethod : public Callable {
 public:
  LoopMethod(std::shared_ptr<LoopObject> loop, bool cycle)
      : loop_(std::move(loop)), cycle_(cycle) {}
  Value call(Interpreter&, CallArgs& args) override {
    if (cycle_) {
      if (args.args.empty()) throw_type_error("no items for cycling given");
      return args.args[loop_->index0_ % args.args.size()];
    }
    bool changed = !loop_->last_changed_ || loop_->last_changed_->size() != args.args.size() ||
                   !equals(Value::tuple(*loop_->last_changed_), Value::tuple(args.args));
    if (changed) loop_->last_changed_ = args.args;
    return Value(changed);
  }
  std::string repr() const override {
    return cycle_ ? "<bound method LoopContext.cycle>" : "<bound method LoopContext.changed>";
  }
  const char* type_name() const override { return "method"; }

 private:
  std::shared_ptr<LoopObject> loop_;
  bool cycle_;
};

Value LoopObject::get_attr(const std::string& name) const {
  int64_t length = static_cast<int64_t>(items_.size());
  int64_t i = static_cast<int64_t>(index0_);
  if (name == "index0") return Value(i);
  if (name == "index") return Value(i + 1);
  if (name == "revindex") return Value(length - i);
  if (name == "revindex0") return Value(length - i - 1);
  if (name == "first") return Value(i == 0);
  if (name == "last") return Value(i + 1 == length);
  if (name == "length") return Value(length);
  if (name == "depth") return Value(int64_t(depth0_ + 1));
  if (name == "depth0") return Value(int64_t(depth0_));
  if (name == "previtem") {
    return i > 0 ? items_[index0_ - 1] : Value::undefined("there is no previous item");
  }
  if (name == "nextitem") {
    return i + 1 < length ? items_[index0_ + 1] : Value::undefined("there is no next item");
  }
  auto self = std::const_pointer_cast<LoopObject>(shared_from_this());
  if (name == "cycle") return Value::callable(std::make_shared<LoopMethod>(self, true));
  if (name == "changed") return Value::callable(std::make_shared<LoopMethod>(self, false));
  return Value::undefined("");
}

}  // namespace

Interpreter::Interpreter(const RenderLimits& limits, const Dict* render_vars)
    : limits_(limits), render_vars_(render_vars), root_(std::make_shared<Frame>()) {}

Interpreter::~Interpreter() {
  // Namespaces are the only mutable containers, so the only way to build a reference cycle
  // (`{% set ns.me = ns %}`); emptying them breaks any cycle.
  for (Value& ns : namespaces_) ns.ns().attrs = Dict();
}

void Interpreter::track_namespace(const Value& ns) {
  namespaces_.push_back(ns);
}

std::string Interpreter::render(const TemplateAst& ast) {
  std::string out;
  exec_body(ast.body, root_, out);
  return out;
}

void Interpreter::count_iterations(int64_t n) {
  iterations_ += n;
  if (iterations_ > limits_.max_iterations) {
    throw_error("LimitError", "the template ran more than " +
                                  std::to_string(limits_.max_iterations) + " loop iterations");
  }
}

void Interpreter::check_size(size_t size) const {
  if (size > limits_.max_output_bytes) {
    throw_error("LimitError", "the template built a value of " + std::to_string(size) +
                                  " bytes, over the limit of " +
                                  std::to_string(limits_.max_output_bytes));
  }
}

void Interpreter::append_output(std::string& out, std::string_view text) const {
  check_size(out.size() + text.size());
  out += text;
}

FramePtr Interpreter::child_frame(const FramePtr& parent) {
  auto f = std::make_shared<Frame>();
  f->parent = parent;
  return f;
}

ValueList Interpreter::iterate(const Value& v) {
  ValueList out;
  switch (v.kind()) {
    case Kind::kUndefined:
      return out;
    case Kind::kList:
    case Kind::kTuple:
    case Kind::kView:
      out = v.items();
      break;
    case Kind::kDict:
      for (const auto& entry : v.dict()) out.push_back(entry.first);
      break;
    case Kind::kString:
      for (std::string& c : py::chars(v.as_string())) out.emplace_back(std::move(c));
      break;
    case Kind::kIterator: {
      IteratorObject& it = v.iter();
      out.assign(it.items.begin() + static_cast<std::ptrdiff_t>(it.pos), it.items.end());
      it.pos = it.items.size();
      break;
    }
    default:
      throw_type_error(std::string("'") + v.type_name() + "' object is not iterable");
  }
  count_iterations(static_cast<int64_t>(out.size()));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Statements

Interpreter::Flow Interpreter::exec_body(const Body& body, const FramePtr& frame,
                                         std::string& out) {
  for (const StmtPtr& s : body) {
    Flow flow = exec_stmt(*s, frame, out);
    if (flow != Flow::kNormal) return flow;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_capture(const Body& body, const FramePtr& frame,
                                            std::string& captured) {
  return exec_body(body, child_frame(frame), captured);
}

Interpreter::Flow Interpreter::exec_stmt(const Stmt& stmt, const FramePtr& frame,
                                         std::string& out) {
  DepthGuard guard(depth_, limits_.max_recursion_depth);
  try {
    switch (stmt.kind) {
      case StmtKind::kText:
        append_output(out, static_cast<const TextStmt&>(stmt).text);
        return Flow::kNormal;
      case StmtKind::kPrint:
        append_output(out, eval(*static_cast<const PrintStmt&>(stmt).expr, frame).str());
        return Flow::kNormal;
      case StmtKind::kIf:
        return exec_if(static_cast<const IfStmt&>(stmt), frame, out);
      case StmtKind::kFor:
        return exec_for(static_cast<const ForStmt&>(stmt), frame, out, 0);
      case StmtKind::kSet: {
        const auto& s = static_cast<const SetStmt&>(stmt);
        assign(s.target, eval(*s.value, frame), frame);
        return Flow::kNormal;
      }
      case StmtKind::kSetBlock: {
        const auto& s = static_cast<const SetBlockStmt&>(stmt);
        std::string captured;
        Flow flow = exec_capture(s.body, frame, captured);
        Value value(std::move(captured));
        if (s.filter) value = apply_filter_chain(s.filter.get(), frame, std::move(value));
        assign(s.target, value, frame);
        return flow;
      }
      case StmtKind::kMacro: {
        const MacroDef& def = static_cast<const MacroStmt&>(stmt).def;
        frame->set(def.name, Value::callable(std::make_shared<MacroCallable>(&def, frame)));
        return Flow::kNormal;
      }
      case StmtKind::kCallBlock:
        exec_call_block(static_cast<const CallBlockStmt&>(stmt), frame, out);
        return Flow::kNormal;
      case StmtKind::kFilterBlock: {
        const auto& s = static_cast<const FilterBlockStmt&>(stmt);
        std::string captured;
        Flow flow = exec_capture(s.body, frame, captured);
        append_output(out,
                      apply_filter_chain(s.filter.get(), frame, Value(std::move(captured))).str());
        return flow;
      }
      case StmtKind::kWith: {
        const auto& s = static_cast<const WithStmt&>(stmt);
        std::vector<Value> values;
        for (const auto& a : s.assignments) values.push_back(eval(*a.second, frame));
        FramePtr inner = child_frame(frame);
        for (size_t i = 0; i < values.size(); ++i) assign(s.assignments[i].first, values[i], inner);
        return exec_body(s.body, inner, out);
      }
      case StmtKind::kScope:
        return exec_body(static_cast<const ScopeStmt&>(stmt).body, child_frame(frame), out);
      case StmtKind::kNeedsLoader:
        throw_type_error("no loader for this environment specified");
      case StmtKind::kBreak:
        return Flow::kBreak;
      case StmtKind::kContinue:
        return Flow::kContinue;
    }
  } catch (JinjaError& e) {
    if (e.line() == 0) e.set_line(stmt.line);
    throw;
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_if(const IfStmt& s, const FramePtr& frame, std::string& out) {
  for (size_t i = 0; i < s.branches.size(); ++i) {
    bool taken;
    try {
      taken = eval(*s.branches[i].first, frame).truthy();
    } catch (JinjaError& e) {
      if (e.line() == 0) e.set_line(s.branch_lines[i]);
      throw;
    }
    if (taken) return exec_body(s.branches[i].second, frame, out);
  }
  return exec_body(s.else_body, frame, out);
}

Interpreter::Flow Interpreter::exec_for(const ForStmt& s, const FramePtr& frame, std::string& out,
                                        int depth0) {
  loop_over(s, frame, eval(*s.iter, frame), depth0, out);
  return Flow::kNormal;  // break/continue end at their loop
}

std::string Interpreter::run_loop(const ForStmt& stmt, const FramePtr& frame, const Value& iterable,
                                  int depth0) {
  // A recursive loop called as loop(children): the same loop over new items, one level deeper.
  DepthGuard guard(depth_, limits_.max_recursion_depth);
  std::string out;
  loop_over(stmt, frame, iterable, depth0, out);
  return out;
}

void Interpreter::loop_over(const ForStmt& s, const FramePtr& frame, const Value& iterable,
                            int depth0, std::string& out) {
  ValueList items = iterate(iterable);
  if (s.filter) {
    // jinja2 filters lazily; the filter sees the target names but not `loop`.
    ValueList kept;
    for (Value& item : items) {
      FramePtr test_frame = child_frame(frame);
      assign(s.target, item, test_frame);
      if (eval(*s.filter, test_frame).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec_body(s.else_body, child_frame(frame), out);
    return;
  }
  auto loop = std::make_shared<LoopObject>(&s, frame, std::move(items), depth0);
  Value loop_value = Value::callable(loop);
  for (size_t i = 0; i < loop->items().size(); ++i) {
    loop->set_index(i);
    // Every iteration starts from a fresh scope: names set in the body don't carry over.
    FramePtr body_frame = child_frame(frame);
    assign(s.target, loop->items()[i], body_frame);
    body_frame->set("loop", loop_value);
    if (exec_body(s.body, body_frame, out) == Flow::kBreak) break;
  }
}

void Interpreter::exec_call_block(const CallBlockStmt& s, const FramePtr& frame, std::string& out) {
  Value caller = Value::callable(std::make_shared<MacroCallable>(&s.caller, frame));
  append_output(out, eval_call(static_cast<const CallExpr&>(*s.call), frame, caller).str());
}

Value Interpreter::call_macro(const MacroDef& def, const std::weak_ptr<Frame>& closure,
                              CallArgs& args) {
  DepthGuard guard(depth_, limits_.max_recursion_depth);
  // Each call counts as an iteration: a macro calling itself twice is bounded in depth but not in
  // calls (2^depth of them).
  count_iterations(1);
  size_t n = def.params.size();
  std::vector<std::optional<Value>> bound(n);
  size_t num_positional = std::min(args.args.size(), n);
  for (size_t i = 0; i < num_positional; ++i) bound[i] = args.args[i];
  auto kwargs = args.kwargs;
  auto pop_kwarg = [&](const std::string& name) -> std::optional<Value> {
    for (auto it = kwargs.begin(); it != kwargs.end(); ++it) {
      if (it->first == name) {
        Value v = std::move(it->second);
        kwargs.erase(it);
        return v;
      }
    }
    return std::nullopt;
  };
  bool found_caller = false;
  if (num_positional != n) {
    for (size_t i = num_positional; i < n; ++i) {
      bound[i] = pop_kwarg(def.params[i]);
      found_caller |= def.params[i] == "caller";
    }
  } else {
    found_caller = std::find(def.params.begin(), def.params.end(), "caller") != def.params.end();
  }
  std::optional<Value> caller;
  if (def.uses_caller && !found_caller) {
    caller = pop_kwarg("caller");
    if (!caller) caller = Value::undefined("No caller defined");
  }
  if (!def.uses_kwargs && !kwargs.empty()) {
    for (const auto& kw : kwargs) {
      if (kw.first == "caller") {
        throw_type_error("macro '" + def.name +
                         "' was invoked with two values for the special caller "
                         "argument. This is most likely a bug.");
      }
    }
    throw_type_error("macro '" + def.name + "' takes no keyword argument '" + kwargs.front().first +
                     "'");
  }
  if (!def.uses_varargs && args.args.size() > n) {
    throw_type_error("macro '" + def.name + "' takes not more than " + std::to_string(n) +
                     " argument(s)");
  }
  FramePtr parent = closure.lock();
  FramePtr frame = child_frame(parent ? parent : root_);
  size_t first_default = n - def.defaults.size();
  for (size_t i = 0; i < n; ++i) {
    if (bound[i]) {
      frame->set(def.params[i], *bound[i]);
    } else if (i >= first_default) {
      frame->set(def.params[i], eval(*def.defaults[i - first_default], frame));
    } else {
      frame->set(def.params[i],
                 Value::undefined("parameter '" + def.params[i] + "' was not provided"));
    }
  }
  if (caller) frame->set("caller", *caller);
  if (def.uses_kwargs) {
    Dict d;
    for (auto& kw : kwargs) d.set(Value(kw.first), std::move(kw.second));
    frame->set("kwargs", Value::dict(std::move(d)));
  }
  if (def.uses_varargs) {
    ValueList extra;
    for (size_t i = n; i < args.args.size(); ++i) extra.push_back(args.args[i]);
    frame->set("varargs", Value::tuple(std::move(extra)));
  }
  std::string out;
  exec_body(def.body, frame, out);
  return Value(std::move(out));
}

void Interpreter::assign(const Target& target, const Value& value, const FramePtr& frame) {
  switch (target.kind) {
    case Target::Kind::kName:
      frame->set(target.name, value);
      return;
    case Target::Kind::kNamespaceAttr: {
      NameExpr name(target.name, 0);
      Value ns = eval_name(name, frame);
      if (!ns.is_namespace()) {
        throw_error("TemplateRuntimeError", "cannot assign attribute on non-namespace object");
      }
      if (!target.attr.empty() && target.attr[0] == '_') {
        throw_error("SecurityError",
                    "Chat templates cannot store underscore-prefixed attributes on a "
                    "namespace, but got " +
                        string_repr(target.attr) + ". Please rename the attribute.");
      }
      ns.ns().attrs.set(Value(target.attr), value);
      return;
    }
    case Target::Kind::kTuple: {
      bool iterable = value.is_string() || value.is_sequence() || value.is_dict() ||
                      value.is_view() || value.is_iterator() || value.is_undefined();
      if (!iterable)
        throw_type_error(std::string("cannot unpack non-iterable ") + value.type_name() +
                         " object");
      ValueList items = iterate(value);
      size_t want = target.items.size();
      if (items.size() < want) {
        throw_error("ValueError", "not enough values to unpack (expected " + std::to_string(want) +
                                      ", got " + std::to_string(items.size()) + ")");
      }
      if (items.size() > want) {
        throw_error("ValueError",
                    "too many values to unpack (expected " + std::to_string(want) + ")");
      }
      for (size_t i = 0; i < want; ++i) assign(target.items[i], items[i], frame);
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Expressions

Value Interpreter::eval(const Expr& e, const FramePtr& frame) {
  DepthGuard guard(depth_, limits_.max_recursion_depth);
  return eval_dispatch(e, frame);
}

Value Interpreter::eval_dispatch(const Expr& e, const FramePtr& frame) {
  switch (e.kind) {
    case ExprKind::kConst:
      return static_cast<const ConstExpr&>(e).value;
    case ExprKind::kName:
      return eval_name(static_cast<const NameExpr&>(e), frame);
    case ExprKind::kGetAttr: {
      const auto& g = static_cast<const GetAttrExpr&>(e);
      return get_attr(eval(*g.object, frame), g.attr);
    }
    case ExprKind::kGetItem:
      return eval_getitem(static_cast<const GetItemExpr&>(e), frame);
    case ExprKind::kSlice:
      throw_type_error("a slice is only valid inside []");
    case ExprKind::kList:
    case ExprKind::kTuple: {
      ValueList items;
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(e).items)
        items.push_back(eval(*item, frame));
      count_iterations(static_cast<int64_t>(items.size()));
      return e.kind == ExprKind::kList ? Value::list(std::move(items))
                                       : Value::tuple(std::move(items));
    }
    case ExprKind::kDict: {
      Dict d;
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        Value key = eval(*k, frame);
        d.set(std::move(key), eval(*v, frame));
      }
      count_iterations(static_cast<int64_t>(d.size()));
      return Value::dict(std::move(d));
    }
    case ExprKind::kUnary: {
      const auto& u = static_cast<const UnaryExpr&>(e);
      return unary_op(u.op, eval(*u.operand, frame));
    }
    case ExprKind::kBinary:
      return eval_binary(static_cast<const BinaryExpr&>(e), frame);
    case ExprKind::kConcat: {
      std::string out;
      for (const ExprPtr& part : static_cast<const ConcatExpr&>(e).parts)
        append_output(out, eval(*part, frame).str());
      return Value(std::move(out));
    }
    case ExprKind::kCompare:
      return eval_compare(static_cast<const CompareExpr&>(e), frame);
    case ExprKind::kCondExpr: {
      const auto& c = static_cast<const CondExpr&>(e);
      if (eval(*c.test, frame).truthy()) return eval(*c.then, frame);
      if (c.otherwise) return eval(*c.otherwise, frame);
      if (const_mode_) impossible();  // jinja2 leaves this to run time
      return Value::undefined("the inline if-expression on line " + std::to_string(c.line) +
                              " evaluated to false and no else section was defined.");
    }
    case ExprKind::kCall:
      return eval_call(static_cast<const CallExpr&>(e), frame);
    case ExprKind::kFilter:
      return eval_filter(static_cast<const FilterExpr&>(e), frame, nullptr);
    case ExprKind::kTest:
      return eval_test(static_cast<const TestExpr&>(e), frame);
  }
  return Value();
}

[[noreturn]] void Interpreter::impossible() {
  throw JinjaError("Impossible", "not a constant");
}

std::optional<Value> Interpreter::try_const_eval(const Expr& e) {
  const_mode_ = true;
  try {
    Value v = eval(e, root_);
    const_mode_ = false;
    return v;
  } catch (const JinjaError&) {
    const_mode_ = false;
    return std::nullopt;
  }
}

Value Interpreter::eval_name(const NameExpr& e, const FramePtr& frame) {
  if (const_mode_) impossible();
  for (const Frame* f = frame.get(); f; f = f->parent.get()) {
    if (const Value* v = f->find_local(e.name)) return *v;
  }
  if (render_vars_) {
    if (const Value* v = render_vars_->find(std::string_view(e.name))) return *v;
  }
  if (const Value* v = environment_globals().find(std::string_view(e.name))) return *v;
  return Value::undefined("'" + e.name + "' is undefined");
}

Value Interpreter::eval_binary(const BinaryExpr& e, const FramePtr& frame) {
  if (e.op == BinaryOp::kAnd || e.op == BinaryOp::kOr) {
    Value left = eval(*e.left, frame);
    bool short_circuit = e.op == BinaryOp::kAnd ? !left.truthy() : left.truthy();
    return short_circuit ? left : eval(*e.right, frame);
  }
  Value left = eval(*e.left, frame);
  Value right = eval(*e.right, frame);
  return binary_op(e.op, left, right, limits_.max_output_bytes);
}

Value Interpreter::eval_compare(const CompareExpr& e, const FramePtr& frame) {
  Value left = eval(*e.first, frame);
  for (const auto& [op, expr] : e.ops) {
    Value right = eval(*expr, frame);
    if (!compare_op(op, left, right)) return Value(false);
    left = std::move(right);
  }
  return Value(true);
}

Value Interpreter::eval_getitem(const GetItemExpr& e, const FramePtr& frame) {
  Value obj = eval(*e.object, frame);
  if (e.key->kind == ExprKind::kSlice) {
    const auto& s = static_cast<const SliceExpr&>(*e.key);
    Value start = s.start ? eval(*s.start, frame) : Value::none();
    Value stop = s.stop ? eval(*s.stop, frame) : Value::none();
    Value step = s.step ? eval(*s.step, frame) : Value::none();
    bool sliceable = obj.is_string() || obj.is_sequence() || obj.is_undefined();
    if (!sliceable && const_mode_) {
      // jinja2 folds constants through the environment's getitem, which turns the failed slice
      // into an undefined value; at run time the slice is Python's own and raises.
      return Value::undefined(obj.object_type_repr() + " has no element slice(" + start.repr() +
                              ", " + stop.repr() + ", " + step.repr() + ")");
    }
    return get_slice(obj, start, stop, step);
  }
  return get_item(obj, eval(*e.key, frame));
}

CallArgs Interpreter::eval_args(const CallArgsExpr& a, const FramePtr& frame) {
  CallArgs args;
  for (const ExprPtr& p : a.positional) args.args.push_back(eval(*p, frame));
  for (const auto& [name, expr] : a.keywords) args.kwargs.emplace_back(name, eval(*expr, frame));
  if (a.star_args) {
    for (Value& v : iterate(eval(*a.star_args, frame))) args.args.push_back(std::move(v));
  }
  if (a.star_kwargs) {
    Value kw = eval(*a.star_kwargs, frame);
    if (!kw.is_dict())
      throw_type_error("argument after ** must be a mapping, not " + std::string(kw.type_name()));
    for (const auto& [k, v] : kw.dict()) {
      if (!k.is_string()) throw_type_error("keywords must be strings");
      args.kwargs.emplace_back(k.as_string(), v);
    }
  }
  return args;
}

Value Interpreter::eval_call(const CallExpr& e, const FramePtr& frame,
                             std::optional<Value> caller) {
  if (const_mode_) impossible();
  Value fn = eval(*e.callee, frame);
  CallArgs args = eval_args(e.args, frame);
  if (caller) args.kwargs.emplace_back("caller", std::move(*caller));
  return call(fn, args);
}

Value Interpreter::call(const Value& fn, CallArgs& args) {
  if (fn.is_undefined()) fn.fail_undefined();
  if (!fn.is_callable())
    throw_type_error(std::string("'") + fn.type_name() + "' object is not callable");
  return fn.callable()->call(*this, args);
}

Value Interpreter::eval_filter(const FilterExpr& e, const FramePtr& frame, const Value* input) {
  if (const_mode_) {
    // Filters that take the template context are never folded.
    static const char* const kContextFilters[] = {"map",        "select",     "reject",
                                                  "selectattr", "rejectattr", "random"};
    for (const char* name : kContextFilters) {
      if (e.name == name) impossible();
    }
    if (!e.operand && !input) impossible();
  }
  Value operand = e.operand
                      ? (e.operand->kind == ExprKind::kFilter
                             ? eval_filter(static_cast<const FilterExpr&>(*e.operand), frame, input)
                             : eval(*e.operand, frame))
                      : (input ? *input : Value());
  CallArgs args = eval_args(e.args, frame);
  if (!find_filter(e.name))
    throw_error("TemplateRuntimeError", "No filter named '" + e.name + "' found.");
  return apply_filter(e.name, operand, args);
}

Value Interpreter::apply_filter_chain(const Expr* chain, const FramePtr& frame, Value input) {
  return eval_filter(static_cast<const FilterExpr&>(*chain), frame, &input);
}

// Filters and tests named in the template are checked when parsing, except inside `if` and
// conditional expressions, where jinja2 only fails when they run ("... found."); those named by
// map/select at run time fail with jinja2's call_filter/call_test message.
Value Interpreter::apply_filter(const std::string& name, const Value& operand, CallArgs& args) {
  FilterFn fn = find_filter(name);
  if (!fn) throw_error("TemplateRuntimeError", "No filter named '" + name + "'.");
  return fn(*this, operand, args);
}

bool Interpreter::apply_test(const std::string& name, const Value& operand, CallArgs& args) {
  TestFn fn = find_test(name);
  if (!fn) throw_error("TemplateRuntimeError", "No test named '" + name + "'.");
  return fn(*this, operand, args);
}

Value Interpreter::eval_test(const TestExpr& e, const FramePtr& frame) {
  Value operand = eval(*e.operand, frame);
  CallArgs args = eval_args(e.args, frame);
  if (!find_test(e.name))
    throw_error("TemplateRuntimeError", "No test named '" + e.name + "' found.");
  return Value(apply_test(e.name, operand, args));
}

}  // namespace cvllm::jinja
