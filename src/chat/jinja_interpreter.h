// Tree-walking interpreter for TemplateAst with jinja2's run-time semantics: scopes (each loop
// iteration, macro call, with/filter/set block gets a fresh scope; `if` does not), macros with
// defaults/varargs/kwargs/caller, loop objects, namespaces, the sandbox's attribute rules, and
// limits that bound hostile templates (call depth, total loop iterations, string sizes).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace cvllm::jinja {

struct RenderLimits {
  int max_recursion_depth = 400;        // nested macro calls plus nested evaluation
  int64_t max_iterations = 10'000'000;  // loop iterations, items built and macro calls, per render
  size_t max_output_bytes = 64u << 20;  // the output, and any single string or list built
};

// A date and time without a time zone, as Python's datetime.now() returns.
struct NaiveDateTime {
  int year = 1970, month = 1, day = 1, hour = 0, minute = 0, second = 0, microsecond = 0;
  static NaiveDateTime now_local();
  // Parses "YYYY-MM-DD", "YYYY-MM-DD HH:MM[:SS[.ffffff]]" (or with 'T'); nullopt if malformed.
  static std::optional<NaiveDateTime> parse(const std::string& text);
};
// Python's datetime.strftime for a naive datetime (%f supported, %z/%Z empty).
std::string py_strftime(const std::string& format, const NaiveDateTime& t);

// jinja2's compile-time constant folding (its optimizer, and the folding of print statements):
// constant subexpressions whose value Python can write as a literal become constants, and
// constant print statements become text. Only observable where folding and run time differ
// (slicing a constant that is not a sequence gives undefined instead of a TypeError).
void fold_constants(TemplateAst& ast, const RenderLimits& limits);

// The global callables of transformers' environment that templates rely on.
Value make_raise_exception();
Value make_strftime_now(std::optional<NaiveDateTime> fixed_now);

struct Frame;
using FramePtr = std::shared_ptr<Frame>;

class Interpreter {
 public:
  Interpreter(const RenderLimits& limits, const Dict* render_vars);
  ~Interpreter();

  std::string render(const TemplateAst& ast);

  // Services for filters, tests, methods and builtins.
  Value call(const Value& fn, CallArgs& args);
  Value apply_filter(const std::string& name, const Value& operand, CallArgs& args);
  bool apply_test(const std::string& name, const Value& operand, CallArgs& args);
  // Python iter(): the items of a list/tuple, the keys of a dict, the characters of a str, the
  // remaining items of an iterator (consuming it); nothing for undefined. Counts toward the
  // iteration budget.
  ValueList iterate(const Value& v);
  void count_iterations(int64_t n);
  void check_size(size_t size) const;
  // Every namespace created during the render, so the destructor can break reference cycles.
  void track_namespace(const Value& ns);
  const RenderLimits& limits() const { return limits_; }

  // Evaluates `e` as jinja2's constant folding does (Node.as_const): no variables, calls or
  // context filters; slices through getitem. nullopt when it is not a constant.
  std::optional<Value> try_const_eval(const Expr& e);

  // Used by macro and loop objects.
  Value call_macro(const MacroDef& def, const std::weak_ptr<Frame>& closure, CallArgs& args);
  std::string run_loop(const ForStmt& stmt, const FramePtr& frame, const Value& iterable,
                       int depth0);

 private:
  enum class Flow { kNormal, kBreak, kContinue };

  Flow exec_body(const Body& body, const FramePtr& frame, std::string& out);
  Flow exec_stmt(const Stmt& stmt, const FramePtr& frame, std::string& out);
  Flow exec_if(const IfStmt& s, const FramePtr& frame, std::string& out);
  Flow exec_for(const ForStmt& s, const FramePtr& frame, std::string& out, int depth0);
  void loop_over(const ForStmt& s, const FramePtr& frame, const Value& iterable, int depth0,
                 std::string& out);
  void exec_call_block(const CallBlockStmt& s, const FramePtr& frame, std::string& out);
  Flow exec_capture(const Body& body, const FramePtr& frame, std::string& captured);

  Value eval(const Expr& e, const FramePtr& frame);
  Value eval_dispatch(const Expr& e, const FramePtr& frame);
  Value eval_name(const NameExpr& e, const FramePtr& frame);
  Value eval_binary(const BinaryExpr& e, const FramePtr& frame);
  Value eval_compare(const CompareExpr& e, const FramePtr& frame);
  Value eval_call(const CallExpr& e, const FramePtr& frame, std::optional<Value> caller = {});
  Value eval_filter(const FilterExpr& e, const FramePtr& frame, const Value* input);
  Value eval_test(const TestExpr& e, const FramePtr& frame);
  Value eval_getitem(const GetItemExpr& e, const FramePtr& frame);
  CallArgs eval_args(const CallArgsExpr& a, const FramePtr& frame);
  [[noreturn]] static void impossible();
  // Applies a chain of filters whose innermost operand is null to `input` ({% filter %}, set
  // blocks).
  Value apply_filter_chain(const Expr* chain, const FramePtr& frame, Value input);

  void assign(const Target& target, const Value& value, const FramePtr& frame);
  FramePtr child_frame(const FramePtr& parent);
  void append_output(std::string& out, std::string_view text) const;

  RenderLimits limits_;
  const Dict* render_vars_;
  FramePtr root_;
  int depth_ = 0;
  int64_t iterations_ = 0;
  std::vector<Value> namespaces_;
  bool const_mode_ = false;
};

}  // namespace cvllm::jinja
