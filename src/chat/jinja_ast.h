// The Jinja syntax tree: plain data produced by the parser and walked by the interpreter (and by
// vLLM's content-format detection). Node shapes follow jinja2's `nodes` module so behaviour that
// depends on the tree (operator precedence, what a filter applies to) matches.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace cvllm::jinja {

enum class ExprKind : uint8_t {
  kConst,
  kName,
  kGetAttr,
  kGetItem,
  kSlice,
  kList,
  kTuple,
  kDict,
  kUnary,
  kBinary,
  kConcat,
  kCompare,
  kCondExpr,
  kCall,
  kFilter,
  kTest,
};

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  Expr(ExprKind k, int l) : kind(k), line(l) {}
  virtual ~Expr() = default;
  ExprKind kind;
  int line;
  int depth = 1;  // levels of the subtree; the parser bounds it
};

struct ConstExpr : Expr {
  ConstExpr(Value v, int l) : Expr(ExprKind::kConst, l), value(std::move(v)) {}
  Value value;
};

struct NameExpr : Expr {
  NameExpr(std::string n, int l) : Expr(ExprKind::kName, l), name(std::move(n)) {}
  std::string name;
};

struct GetAttrExpr : Expr {  // obj.attr
  GetAttrExpr(ExprPtr o, std::string a, int l)
      : Expr(ExprKind::kGetAttr, l), object(std::move(o)), attr(std::move(a)) {}
  ExprPtr object;
  std::string attr;
  bool nsref = false;  // `ns.attr` as an assignment target
};

struct GetItemExpr : Expr {  // obj[key]; key may be a SliceExpr
  GetItemExpr(ExprPtr o, ExprPtr k, int l)
      : Expr(ExprKind::kGetItem, l), object(std::move(o)), key(std::move(k)) {}
  ExprPtr object;
  ExprPtr key;
};

struct SliceExpr : Expr {  // start:stop:step, each optional
  explicit SliceExpr(int l) : Expr(ExprKind::kSlice, l) {}
  ExprPtr start, stop, step;
};

struct SequenceExpr : Expr {  // [a, b] or (a, b)
  SequenceExpr(ExprKind k, int l) : Expr(k, l) {}
  std::vector<ExprPtr> items;
};

struct DictExpr : Expr {
  explicit DictExpr(int l) : Expr(ExprKind::kDict, l) {}
  std::vector<std::pair<ExprPtr, ExprPtr>> items;
};

enum class UnaryOp : uint8_t { kNot, kNeg, kPos };

struct UnaryExpr : Expr {
  UnaryExpr(UnaryOp o, ExprPtr e, int l)
      : Expr(ExprKind::kUnary, l), op(o), operand(std::move(e)) {}
  UnaryOp op;
  ExprPtr operand;
};

enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow, kAnd, kOr };

struct BinaryExpr : Expr {
  BinaryExpr(BinaryOp o, ExprPtr a, ExprPtr b, int l)
      : Expr(ExprKind::kBinary, l), op(o), left(std::move(a)), right(std::move(b)) {}
  BinaryOp op;
  ExprPtr left, right;
};

struct ConcatExpr : Expr {  // a ~ b ~ c
  explicit ConcatExpr(int l) : Expr(ExprKind::kConcat, l) {}
  std::vector<ExprPtr> parts;
};

enum class CompareOp : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe, kIn, kNotIn };

struct CompareExpr : Expr {  // a < b <= c: chained like Python
  CompareExpr(ExprPtr f, int l) : Expr(ExprKind::kCompare, l), first(std::move(f)) {}
  ExprPtr first;
  std::vector<std::pair<CompareOp, ExprPtr>> ops;
};

struct CondExpr : Expr {  // then if test else otherwise (otherwise optional)
  explicit CondExpr(int l) : Expr(ExprKind::kCondExpr, l) {}
  ExprPtr test, then, otherwise;
};

struct CallArgsExpr {
  std::vector<ExprPtr> positional;
  std::vector<std::pair<std::string, ExprPtr>> keywords;
  ExprPtr star_args;    // *args
  ExprPtr star_kwargs;  // **kwargs
};

struct CallExpr : Expr {
  CallExpr(ExprPtr c, int l) : Expr(ExprKind::kCall, l), callee(std::move(c)) {}
  ExprPtr callee;
  CallArgsExpr args;
};

struct FilterExpr : Expr {  // operand|name(args); operand is null inside {% filter %} / set blocks
  FilterExpr(ExprPtr o, std::string n, int l)
      : Expr(ExprKind::kFilter, l), operand(std::move(o)), name(std::move(n)) {}
  ExprPtr operand;
  std::string name;
  CallArgsExpr args;
};

struct TestExpr : Expr {  // operand is name(args)
  TestExpr(ExprPtr o, std::string n, int l)
      : Expr(ExprKind::kTest, l), operand(std::move(o)), name(std::move(n)) {}
  ExprPtr operand;
  std::string name;
  CallArgsExpr args;
};

// Assignment targets: a name, a namespace attribute (ns.attr) or a tuple of targets.
struct Target {
  enum class Kind : uint8_t { kName, kNamespaceAttr, kTuple } kind = Kind::kName;
  std::string name;
  std::string attr;
  std::vector<Target> items;
};

enum class StmtKind : uint8_t {
  kText,
  kPrint,
  kIf,
  kFor,
  kSet,
  kSetBlock,
  kMacro,
  kCallBlock,
  kFilterBlock,
  kWith,
  kScope,  // {% generation %}, {% block %}: a body rendered in its own scope
  kBreak,
  kContinue,
  kNeedsLoader,  // extends/include/import/from: jinja2 fails when it runs (no template loader)
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

struct Stmt {
  Stmt(StmtKind k, int l) : kind(k), line(l) {}
  virtual ~Stmt() = default;
  StmtKind kind;
  int line;
};

struct TextStmt : Stmt {
  TextStmt(std::string t, int l) : Stmt(StmtKind::kText, l), text(std::move(t)) {}
  std::string text;
};

struct PrintStmt : Stmt {
  PrintStmt(ExprPtr e, int l) : Stmt(StmtKind::kPrint, l), expr(std::move(e)) {}
  ExprPtr expr;
};

struct IfStmt : Stmt {
  explicit IfStmt(int l) : Stmt(StmtKind::kIf, l) {}
  std::vector<std::pair<ExprPtr, Body>> branches;  // if + elifs
  std::vector<int> branch_lines;                   // where each test is (errors name it)
  Body else_body;
};

struct ForStmt : Stmt {
  explicit ForStmt(int l) : Stmt(StmtKind::kFor, l) {}
  Target target;
  ExprPtr iter;
  ExprPtr filter;  // `for x in xs if cond`
  bool recursive = false;
  Body body, else_body;
};

struct SetStmt : Stmt {
  explicit SetStmt(int l) : Stmt(StmtKind::kSet, l) {}
  Target target;
  ExprPtr value;
};

struct SetBlockStmt : Stmt {  // {% set x | filters %}body{% endset %}
  explicit SetBlockStmt(int l) : Stmt(StmtKind::kSetBlock, l) {}
  Target target;
  ExprPtr filter;  // chain of FilterExpr with a null innermost operand, or null
  Body body;
};

// A macro, or the caller of a {% call %} block. Flags say whether the body reads the special
// names, which decides how extra arguments are accepted (jinja2's catch_varargs/catch_kwargs).
struct MacroDef {
  std::string name;
  std::vector<std::string> params;
  std::vector<ExprPtr> defaults;  // for the last defaults.size() params
  Body body;
  bool uses_caller = false, uses_varargs = false, uses_kwargs = false;
};

struct MacroStmt : Stmt {
  explicit MacroStmt(int l) : Stmt(StmtKind::kMacro, l) {}
  MacroDef def;
};

struct CallBlockStmt : Stmt {  // {% call(params) macro(args) %}body{% endcall %}
  explicit CallBlockStmt(int l) : Stmt(StmtKind::kCallBlock, l) {}
  ExprPtr call;     // a CallExpr
  MacroDef caller;  // name "caller"
};

struct FilterBlockStmt : Stmt {
  explicit FilterBlockStmt(int l) : Stmt(StmtKind::kFilterBlock, l) {}
  ExprPtr filter;  // chain of FilterExpr with a null innermost operand
  Body body;
};

struct WithStmt : Stmt {
  explicit WithStmt(int l) : Stmt(StmtKind::kWith, l) {}
  std::vector<std::pair<Target, ExprPtr>> assignments;
  Body body;
};

struct ScopeStmt : Stmt {
  explicit ScopeStmt(int l) : Stmt(StmtKind::kScope, l) {}
  Body body;
};

struct TemplateAst {
  Body body;
};

// Calls fn(child) for each direct sub-expression of `e`.
template <typename Fn>
void for_each_child(const Expr& e, Fn&& fn) {
  auto visit = [&](const ExprPtr& p) {
    if (p) fn(*p);
  };
  auto visit_args = [&](const CallArgsExpr& a) {
    for (const ExprPtr& p : a.positional) visit(p);
    for (const auto& kw : a.keywords) visit(kw.second);
    visit(a.star_args);
    visit(a.star_kwargs);
  };
  switch (e.kind) {
    case ExprKind::kGetAttr:
      visit(static_cast<const GetAttrExpr&>(e).object);
      break;
    case ExprKind::kGetItem:
      visit(static_cast<const GetItemExpr&>(e).object);
      visit(static_cast<const GetItemExpr&>(e).key);
      break;
    case ExprKind::kSlice:
      visit(static_cast<const SliceExpr&>(e).start);
      visit(static_cast<const SliceExpr&>(e).stop);
      visit(static_cast<const SliceExpr&>(e).step);
      break;
    case ExprKind::kList:
    case ExprKind::kTuple:
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(e).items) visit(item);
      break;
    case ExprKind::kDict:
      for (const auto& [k, v] : static_cast<const DictExpr&>(e).items) {
        visit(k);
        visit(v);
      }
      break;
    case ExprKind::kUnary:
      visit(static_cast<const UnaryExpr&>(e).operand);
      break;
    case ExprKind::kBinary:
      visit(static_cast<const BinaryExpr&>(e).left);
      visit(static_cast<const BinaryExpr&>(e).right);
      break;
    case ExprKind::kConcat:
      for (const ExprPtr& p : static_cast<const ConcatExpr&>(e).parts) visit(p);
      break;
    case ExprKind::kCompare:
      visit(static_cast<const CompareExpr&>(e).first);
      for (const auto& op : static_cast<const CompareExpr&>(e).ops) visit(op.second);
      break;
    case ExprKind::kCondExpr:
      visit(static_cast<const CondExpr&>(e).test);
      visit(static_cast<const CondExpr&>(e).then);
      visit(static_cast<const CondExpr&>(e).otherwise);
      break;
    case ExprKind::kCall:
      visit(static_cast<const CallExpr&>(e).callee);
      visit_args(static_cast<const CallExpr&>(e).args);
      break;
    case ExprKind::kFilter:
      visit(static_cast<const FilterExpr&>(e).operand);
      visit_args(static_cast<const FilterExpr&>(e).args);
      break;
    case ExprKind::kTest:
      visit(static_cast<const TestExpr&>(e).operand);
      visit_args(static_cast<const TestExpr&>(e).args);
      break;
    default:
      break;
  }
}

}  // namespace cvllm::jinja
