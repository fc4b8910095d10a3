// Compile-time constant folding as jinja2 does it (jinja2/optimizer.py and
// CodeGenerator._output_child_to_const): every expression whose value can be computed without
// variables, calls or context filters, and which Python could write as a literal, becomes a
// constant; a print statement whose expression is constant prints its value computed at compile
// time (even an undefined one). The results equal run-time evaluation except where jinja2's
// constant evaluation differs: slices go through getitem and give undefined instead of failing.
#include "chat/jinja_ast.h"
#include "chat/jinja_interpreter.h"

namespace cvllm::jinja {

namespace {

// jinja2.compiler.has_safe_repr: None, bool, int, float, str and containers of those.
bool has_safe_repr(const Value& v, int depth = 0) {
  if (depth > 64) return false;
  switch (v.kind()) {
    case Kind::kNone:
    case Kind::kBool:
    case Kind::kInt:
    case Kind::kFloat:
    case Kind::kString:
      return true;
    case Kind::kList:
    case Kind::kTuple:
      for (const Value& item : v.items()) {
        if (!has_safe_repr(item, depth + 1)) return false;
      }
      return true;
    case Kind::kDict:
      for (const auto& [k, item] : v.dict()) {
        if (!has_safe_repr(k, depth + 1) || !has_safe_repr(item, depth + 1)) return false;
      }
      return true;
    default:
      return false;
  }
}

class Folder {
 public:
  explicit Folder(const RenderLimits& limits) : interp_(limits, nullptr) {}

  void body(Body& b) {
    for (StmtPtr& s : b) stmt(*s);
  }

 private:
  void fold(ExprPtr& e) {
    if (!e) return;
    children(*e);
    if (e->kind == ExprKind::kConst || e->kind == ExprKind::kSlice) return;
    if (e->kind == ExprKind::kFilter && !static_cast<FilterExpr&>(*e).operand) return;
    std::optional<Value> v = interp_.try_const_eval(*e);
    if (v && has_safe_repr(*v)) e = std::make_unique<ConstExpr>(std::move(*v), e->line);
  }

  void args(CallArgsExpr& a) {
    for (ExprPtr& p : a.positional) fold(p);
    for (auto& kw : a.keywords) fold(kw.second);
    fold(a.star_args);
    fold(a.star_kwargs);
  }

  void children(Expr& e) {
    switch (e.kind) {
      case ExprKind::kGetAttr:
        fold(static_cast<GetAttrExpr&>(e).object);
        break;
      case ExprKind::kGetItem:
        fold(static_cast<GetItemExpr&>(e).object);
        fold(static_cast<GetItemExpr&>(e).key);
        break;
      case ExprKind::kSlice:
        fold(static_cast<SliceExpr&>(e).start);
        fold(static_cast<SliceExpr&>(e).stop);
        fold(static_cast<SliceExpr&>(e).step);
        break;
      case ExprKind::kList:
      case ExprKind::kTuple:
        for (ExprPtr& item : static_cast<SequenceExpr&>(e).items) fold(item);
        break;
      case ExprKind::kDict:
        for (auto& [k, v] : static_cast<DictExpr&>(e).items) {
          fold(k);
          fold(v);
        }
        break;
      case ExprKind::kUnary:
        fold(static_cast<UnaryExpr&>(e).operand);
        break;
      case ExprKind::kBinary:
        fold(static_cast<BinaryExpr&>(e).left);
        fold(static_cast<BinaryExpr&>(e).right);
        break;
      case ExprKind::kConcat:
        for (ExprPtr& p : static_cast<ConcatExpr&>(e).parts) fold(p);
        break;
      case ExprKind::kCompare:
        fold(static_cast<CompareExpr&>(e).first);
        for (auto& op : static_cast<CompareExpr&>(e).ops) fold(op.second);
        break;
      case ExprKind::kCondExpr:
        fold(static_cast<CondExpr&>(e).test);
        fold(static_cast<CondExpr&>(e).then);
        fold(static_cast<CondExpr&>(e).otherwise);
        break;
      case ExprKind::kCall:
        fold(static_cast<CallExpr&>(e).callee);
        args(static_cast<CallExpr&>(e).args);
        break;
      case ExprKind::kFilter:
        fold(static_cast<FilterExpr&>(e).operand);
        args(static_cast<FilterExpr&>(e).args);
        break;
      case ExprKind::kTest:
        fold(static_cast<TestExpr&>(e).operand);
        args(static_cast<TestExpr&>(e).args);
        break;
      default:
        break;
    }
  }

  void macro(MacroDef& def) {
    for (ExprPtr& d : def.defaults) fold(d);
    body(def.body);
  }

  void stmt(Stmt& s) {
    switch (s.kind) {
      case StmtKind::kPrint: {
        ExprPtr& e = static_cast<PrintStmt&>(s).expr;
        fold(e);
        if (e->kind != ExprKind::kConst) {
          // A constant print statement is written out when compiling, undefined values too.
          if (std::optional<Value> v = interp_.try_const_eval(*e)) {
            e = std::make_unique<ConstExpr>(Value(v->str()), e->line);
          }
        }
        break;
      }
      case StmtKind::kIf:
        for (auto& [test, b] : static_cast<IfStmt&>(s).branches) {
          fold(test);
          body(b);
        }
        body(static_cast<IfStmt&>(s).else_body);
        break;
      case StmtKind::kFor: {
        auto& f = static_cast<ForStmt&>(s);
        fold(f.iter);
        fold(f.filter);
        body(f.body);
        body(f.else_body);
        break;
      }
      case StmtKind::kSet:
        fold(static_cast<SetStmt&>(s).value);
        break;
      case StmtKind::kSetBlock:
        fold(static_cast<SetBlockStmt&>(s).filter);
        body(static_cast<SetBlockStmt&>(s).body);
        break;
      case StmtKind::kMacro:
        macro(static_cast<MacroStmt&>(s).def);
        break;
      case StmtKind::kCallBlock:
        children(*static_cast<CallBlockStmt&>(s).call);
        macro(static_cast<CallBlockStmt&>(s).caller);
        break;
      case StmtKind::kFilterBlock:
        fold(static_cast<FilterBlockStmt&>(s).filter);
        body(static_cast<FilterBlockStmt&>(s).body);
        break;
      case StmtKind::kWith:
        for (auto& a : static_cast<WithStmt&>(s).assignments) fold(a.second);
        body(static_cast<WithStmt&>(s).body);
        break;
      case StmtKind::kScope:
        body(static_cast<ScopeStmt&>(s).body);
        break;
      default:
        break;
    }
  }

  Interpreter interp_;
};

}  // namespace

void fold_constants(TemplateAst& ast, const RenderLimits& limits) {
  Folder(limits).body(ast.body);
}

}  // namespace cvllm::jinja
