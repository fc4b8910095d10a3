// Template: parse once, render many times; and vLLM's content-format detection on the tree.
#include <deque>
#include <set>

#include "chat/jinja.h"
#include "chat/jinja_ast.h"
#include "chat/jinja_parser.h"
#include "chat/jinja_visit.h"
#include "util/error.h"

namespace cvllm::jinja {

std::string format_error(const JinjaError& e) {
  std::string where = "chat template line " + std::to_string(e.line()) + ": ";
  if (e.type() == "TemplateError") return where + e.message();  // raise_exception(message)
  return where + e.type() + ": " + e.message();
}

Template Template::parse(std::string_view source, TemplateOptions options) {
  Template t;
  t.options_ = options;
  t.source_ = std::make_shared<const std::string>(source);
  ParserOptions parser_options;
  parser_options.lexer.trim_blocks = options.trim_blocks;
  parser_options.lexer.lstrip_blocks = options.lstrip_blocks;
  parser_options.max_nesting_depth = options.max_nesting_depth;
  try {
    std::unique_ptr<TemplateAst> ast = parse_template(source, parser_options);
    fold_constants(*ast, options.limits);
    t.ast_ = std::move(ast);
  } catch (const JinjaError& e) {
    throw ValueError(format_error(e));
  }
  return t;
}

std::string Template::render(const Value& globals) const {
  if (!(globals.is_dict() || globals.is_undefined() || globals.is_none())) {
    throw ValueError("chat template globals must be a dict");
  }
  Interpreter interp(options_.limits, globals.is_dict() ? &globals.dict() : nullptr);
  try {
    return interp.render(*ast_);
  } catch (const JinjaError& e) {
    throw ValueError(format_error(e));
  }
}

// ---------------------------------------------------------------------------------------------
// Content-format detection, following vLLM's AST walk: find the names bound to `messages` (or a
// slice/filter/test of it) by `{% set %}`, the loop variables over those, and whether any loop
// iterates `<message var>['content']` / `.content`. Where vLLM's walk trips on an assertion
// (a tuple or namespace target), it falls back to "string"; so do we.

namespace {

struct Collected {
  std::vector<const SetStmt*> sets;
  std::vector<const ForStmt*> fors;
};

// Every {% set %} and {% for %} in document order (jinja2's find_all order).
Collected collect(const Body& body) {
  Collected c;
  auto stmt_fn = [&](const Stmt& s) {
    if (s.kind == StmtKind::kSet) c.sets.push_back(static_cast<const SetStmt*>(&s));
    if (s.kind == StmtKind::kFor) c.fors.push_back(static_cast<const ForStmt*>(&s));
  };
  auto expr_fn = [](const Expr&) { return false; };
  visit_body(body, stmt_fn, expr_fn);
  return c;
}

bool is_var(const Expr& e, const std::string& name) {
  return e.kind == ExprKind::kName && static_cast<const NameExpr&>(e).name == name;
}

bool is_attr_access(const Expr& e, const std::string& name, const std::string& key) {
  if (e.kind == ExprKind::kGetItem) {
    const auto& g = static_cast<const GetItemExpr&>(e);
    if (!is_var(*g.object, name) || g.key->kind != ExprKind::kConst) return false;
    const Value& k = static_cast<const ConstExpr&>(*g.key).value;
    return k.is_string() && k.as_string() == key;
  }
  if (e.kind == ExprKind::kGetAttr) {
    const auto& g = static_cast<const GetAttrExpr&>(e);
    return is_var(*g.object, name) && g.attr == key;
  }
  return false;
}

// vLLM's _is_var_or_elems_access: the variable itself (or `var[key]`), possibly sliced, filtered
// or tested.
bool is_var_or_elems_access(const Expr& e, const std::string& name, const std::string* key) {
  if (e.kind == ExprKind::kFilter) {
    const auto& f = static_cast<const FilterExpr&>(e);
    return f.operand && is_var_or_elems_access(*f.operand, name, key);
  }
  if (e.kind == ExprKind::kTest)
    return is_var_or_elems_access(*static_cast<const TestExpr&>(e).operand, name, key);
  if (e.kind == ExprKind::kGetItem) {
    const auto& g = static_cast<const GetItemExpr&>(e);
    if (g.key->kind == ExprKind::kSlice) return is_var_or_elems_access(*g.object, name, key);
  }
  return key ? is_attr_access(e, name, *key) : is_var(e, name);
}

}  // namespace

bool Template::iterates_message_content() const {
  Collected c = collect(ast_->body);
  // Names that hold the messages (or part of them).
  std::vector<std::string> messages_vars = {"messages"};
  std::set<std::string> seen = {"messages"};
  std::deque<std::string> queue = {"messages"};
  while (!queue.empty()) {
    std::string name = queue.front();
    queue.pop_front();
    for (const SetStmt* s : c.sets) {
      if (!is_var_or_elems_access(*s->value, name, nullptr)) continue;
      if (s->target.kind != Target::Kind::kName) return false;
      messages_vars.push_back(s->target.name);
      if (seen.insert(s->target.name).second) queue.push_back(s->target.name);
    }
  }
  // Loop variables over them: the messages.
  std::vector<std::string> message_vars;
  for (const ForStmt* f : c.fors) {
    for (const std::string& name : messages_vars) {
      if (is_var_or_elems_access(*f->iter, name, nullptr)) {
        if (f->target.kind != Target::Kind::kName) return false;
        message_vars.push_back(f->target.name);
        break;
      }
    }
  }
  // A loop over a message's content.
  static const std::string kContent = "content";
  for (const ForStmt* f : c.fors) {
    for (const std::string& name : message_vars) {
      if (is_var_or_elems_access(*f->iter, name, &kContent))
        return f->target.kind == Target::Kind::kName;
    }
  }
  return false;
}

namespace {

void add_target_names(const Target& t, std::set<std::string>& names) {
  if (t.kind == Target::Kind::kTuple) {
    for (const Target& item : t.items) add_target_names(item, names);
  } else {
    names.insert(t.name);
  }
}

}  // namespace

std::set<std::string> Template::referenced_names() const {
  std::set<std::string> names;
  // jinja2 also resolves names assigned in only some branches from the context.
  auto stmt_fn = [&](const Stmt& s) {
    if (s.kind == StmtKind::kSet) add_target_names(static_cast<const SetStmt&>(s).target, names);
    if (s.kind == StmtKind::kSetBlock)
      add_target_names(static_cast<const SetBlockStmt&>(s).target, names);
  };
  auto expr_fn = [&](const Expr& e) {
    if (e.kind == ExprKind::kName) names.insert(static_cast<const NameExpr&>(e).name);
    return true;
  };
  visit_body(ast_->body, stmt_fn, expr_fn);
  return names;
}

}  // namespace cvllm::jinja
