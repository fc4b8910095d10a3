// Read-only walks over the syntax tree, shared by the parser's checks and the tree queries
// (vLLM's content-format detection, referenced names).
#pragma once

#include "chat/jinja_ast.h"

namespace cvllm::jinja {

// Calls fn(expr) for `e` and every sub-expression; fn returns false to skip the children.
template <typename ExprFn>
void visit_exprs(const Expr* e, ExprFn& fn) {
  if (!e || !fn(*e)) return;
  for_each_child(*e, [&](const Expr& child) { visit_exprs(&child, fn); });
}

// Calls stmt_fn(stmt) for every statement (depth first) and expr_fn on each statement's own
// expressions.
template <typename StmtFn, typename ExprFn>
void visit_body(const Body& body, StmtFn& stmt_fn, ExprFn& expr_fn);

template <typename StmtFn, typename ExprFn>
void visit_macro(const MacroDef& def, StmtFn& stmt_fn, ExprFn& expr_fn) {
  for (const ExprPtr& d : def.defaults) visit_exprs(d.get(), expr_fn);
  visit_body(def.body, stmt_fn, expr_fn);
}

template <typename StmtFn, typename ExprFn>
void visit_body(const Body& body, StmtFn& stmt_fn, ExprFn& expr_fn) {
  for (const StmtPtr& s : body) {
    stmt_fn(*s);
    switch (s->kind) {
      case StmtKind::kPrint:
        visit_exprs(static_cast<const PrintStmt&>(*s).expr.get(), expr_fn);
        break;
      case StmtKind::kIf:
        for (const auto& [test, b] : static_cast<const IfStmt&>(*s).branches) {
          visit_exprs(test.get(), expr_fn);
          visit_body(b, stmt_fn, expr_fn);
        }
        visit_body(static_cast<const IfStmt&>(*s).else_body, stmt_fn, expr_fn);
        break;
      case StmtKind::kFor: {
        const auto& f = static_cast<const ForStmt&>(*s);
        visit_exprs(f.iter.get(), expr_fn);
        visit_exprs(f.filter.get(), expr_fn);
        visit_body(f.body, stmt_fn, expr_fn);
        visit_body(f.else_body, stmt_fn, expr_fn);
        break;
      }
      case StmtKind::kSet:
        visit_exprs(static_cast<const SetStmt&>(*s).value.get(), expr_fn);
        break;
      case StmtKind::kSetBlock:
        visit_exprs(static_cast<const SetBlockStmt&>(*s).filter.get(), expr_fn);
        visit_body(static_cast<const SetBlockStmt&>(*s).body, stmt_fn, expr_fn);
        break;
      case StmtKind::kMacro:
        visit_macro(static_cast<const MacroStmt&>(*s).def, stmt_fn, expr_fn);
        break;
      case StmtKind::kCallBlock:
        visit_exprs(static_cast<const CallBlockStmt&>(*s).call.get(), expr_fn);
        visit_macro(static_cast<const CallBlockStmt&>(*s).caller, stmt_fn, expr_fn);
        break;
      case StmtKind::kFilterBlock:
        visit_exprs(static_cast<const FilterBlockStmt&>(*s).filter.get(), expr_fn);
        visit_body(static_cast<const FilterBlockStmt&>(*s).body, stmt_fn, expr_fn);
        break;
      case StmtKind::kWith:
        for (const auto& a : static_cast<const WithStmt&>(*s).assignments)
          visit_exprs(a.second.get(), expr_fn);
        visit_body(static_cast<const WithStmt&>(*s).body, stmt_fn, expr_fn);
        break;
      case StmtKind::kScope:
        visit_body(static_cast<const ScopeStmt&>(*s).body, stmt_fn, expr_fn);
        break;
      default:
        break;
    }
  }
}

}  // namespace cvllm::jinja
