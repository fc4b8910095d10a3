#include "chat/jinja_parser.h"

#include <algorithm>

#include "chat/jinja_builtins.h"
#include "chat/jinja_visit.h"

namespace cvllm::jinja {

namespace {

// Token types as jinja2 names them in "expected ..." messages.
const char* describe_type(TokenType t) {
  switch (t) {
    case TokenType::kVariableEnd:
      return "end of print statement";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kName:
      return "name";
    default:
      return "token";
  }
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const ParserOptions& options)
      : toks_(std::move(tokens)), opt_(options) {}

  std::unique_ptr<TemplateAst> parse() {
    auto ast = std::make_unique<TemplateAst>();
    ast->body = subparse(nullptr);
    return ast;
  }

 private:
  using EndTokens = std::vector<std::string>;

  // RAII depth counter for recursive descent: bounds the C++ stack on hostile input.
  struct DepthGuard {
    Parser& p;
    explicit DepthGuard(Parser& parser) : p(parser) {
      if (++p.depth_ > p.opt_.max_nesting_depth) p.fail("template is nested too deeply");
    }
    ~DepthGuard() { --p.depth_; }
  };

  // Every expression node records its depth; a tree deeper than the limit is refused as it is
  // built (left-deep chains like a + b + c or x|f|g|h nest too), because evaluating, folding and
  // destroying the tree all recurse on its depth.
  template <typename Node>
  std::unique_ptr<Node> sized(std::unique_ptr<Node> node) {
    int depth = 0;
    for_each_child(*node, [&](const Expr& child) { depth = std::max(depth, child.depth); });
    node->depth = depth + 1;
    if (node->depth > opt_.max_nesting_depth) fail("template is nested too deeply");
    return node;
  }

  // ---- token helpers

  const Token& cur() const { return toks_[i_]; }
  const Token& look() const { return toks_[std::min(i_ + 1, toks_.size() - 1)]; }
  const Token& next() {
    const Token& t = toks_[i_];
    if (i_ + 1 < toks_.size()) ++i_;
    return t;
  }
  bool is_op(const Token& t, const char* op) const {
    return t.type == TokenType::kOperator && t.value == op;
  }
  bool is_op(const char* op) const { return is_op(cur(), op); }
  bool is_name(const Token& t, const char* n) const {
    return t.type == TokenType::kName && t.value == n;
  }
  bool is_name(const char* n) const { return is_name(cur(), n); }
  bool skip_op(const char* op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(const char* n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }

  [[noreturn]] void fail(const std::string& message, int line = 0) const {
    throw JinjaError("TemplateSyntaxError", message, line ? line : cur().line);
  }

  [[noreturn]] void fail_expected(const std::string& expected) const {
    if (cur().type == TokenType::kEof) {
      fail("unexpected end of template, expected '" + expected + "'.");
    }
    fail("expected token '" + expected + "', got '" + describe_token(cur()) + "'");
  }

  const Token& expect_op(const char* op) {
    if (!is_op(op)) fail_expected(op);
    return next();
  }
  const Token& expect_name(const char* n) {
    if (!is_name(n)) fail_expected(n);
    return next();
  }
  const Token& expect_type(TokenType t) {
    if (cur().type != t) fail_expected(describe_type(t));
    return next();
  }

  bool matches_any(const EndTokens& ends) const {
    if (cur().type != TokenType::kName) return false;
    return std::find(ends.begin(), ends.end(), cur().value) != ends.end();
  }

  [[noreturn]] void fail_unknown_tag(const std::string* name, const std::vector<EndTokens>& stack,
                                     int line) const {
    std::string message =
        name ? "Encountered unknown tag '" + *name + "'." : "Unexpected end of template.";
    if (!stack.empty()) {
      std::string looking;
      for (const std::string& e : stack.back())
        looking += (looking.empty() ? "'" : " or '") + e + "'";
      bool expected = false;
      for (const EndTokens& ends : stack) {
        if (name && std::find(ends.begin(), ends.end(), *name) != ends.end()) expected = true;
      }
      if (expected) {
        message +=
            " You probably made a nesting mistake. Jinja is expecting this tag, but currently "
            "looking for " +
            looking + ".";
      } else {
        message += " Jinja was looking for the following tags: " + looking + ".";
      }
    }
    if (!tag_stack_.empty()) {
      message += " The innermost block that needs to be closed is '" + tag_stack_.back() + "'.";
    }
    fail(message, line);
  }

  // ---- statements

  Body subparse(const EndTokens* ends) {
    Body body;
    if (ends) end_stack_.push_back(*ends);
    while (cur().type != TokenType::kEof) {
      const Token& t = cur();
      if (t.type == TokenType::kData) {
        body.push_back(std::make_unique<TextStmt>(t.value, t.line));
        next();
      } else if (t.type == TokenType::kVariableBegin) {
        next();
        int line = cur().line;
        body.push_back(std::make_unique<PrintStmt>(parse_tuple(false, true, {}, false), line));
        expect_type(TokenType::kVariableEnd);
      } else if (t.type == TokenType::kBlockBegin) {
        next();
        if (ends && matches_any(*ends)) {
          end_stack_.pop_back();
          return body;
        }
        parse_statement(body);
        expect_type(TokenType::kBlockEnd);
      } else {
        fail("unexpected '" + describe_token(t) + "'");
      }
    }
    if (ends) end_stack_.pop_back();
    return body;
  }

  Body parse_statements(const EndTokens& ends, bool drop_needle) {
    skip_op(":");
    expect_type(TokenType::kBlockEnd);
    Body body = subparse(&ends);
    if (cur().type == TokenType::kEof) {
      std::vector<EndTokens> stack = end_stack_;
      stack.push_back(ends);
      fail_unknown_tag(nullptr, stack, cur().line);
    }
    if (drop_needle) next();
    return body;
  }

  // Parses a body that runs in its own function in jinja2 (macro, caller): loop controls inside
  // it do not reach an enclosing loop.
  Body parse_function_body(const EndTokens& ends) {
    int saved_loops = loop_depth_;
    loop_depth_ = 0;
    Body body = parse_statements(ends, true);
    loop_depth_ = saved_loops;
    return body;
  }

  void parse_statement(Body& out) {
    DepthGuard guard(*this);
    const Token& tok = cur();
    if (tok.type != TokenType::kName) fail("tag name expected", tok.line);
    std::string name = tok.value;
    int line = tok.line;
    tag_stack_.push_back(name);
    if (name == "for") {
      out.push_back(parse_for());
    } else if (name == "if") {
      out.push_back(parse_if());
    } else if (name == "set") {
      out.push_back(parse_set());
    } else if (name == "macro") {
      out.push_back(parse_macro());
    } else if (name == "call") {
      out.push_back(parse_call_block());
    } else if (name == "filter") {
      out.push_back(parse_filter_block());
    } else if (name == "with") {
      out.push_back(parse_with());
    } else if (name == "print") {
      next();
      bool first = true;
      while (cur().type != TokenType::kBlockEnd) {
        if (!first) expect_op(",");
        first = false;
        out.push_back(std::make_unique<PrintStmt>(parse_expression(true), line));
      }
    } else if (name == "block" || name == "generation" || name == "autoescape") {
      out.push_back(parse_scope(name));
    } else if (name == "break" || name == "continue") {
      next();
      if (loop_depth_ == 0) fail("'" + name + "' outside loop", line);
      out.push_back(
          std::make_unique<Stmt>(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, line));
    } else if (name == "extends" || name == "include" || name == "import" || name == "from") {
      // Parsed loosely (the arguments are skipped): running it fails as in jinja2, which has no
      // template loader in transformers' environment.
      next();
      while (cur().type != TokenType::kBlockEnd && cur().type != TokenType::kEof) next();
      out.push_back(std::make_unique<Stmt>(StmtKind::kNeedsLoader, line));
    } else {
      tag_stack_.pop_back();
      fail_unknown_tag(&name, end_stack_, line);
    }
    tag_stack_.pop_back();
  }

  StmtPtr parse_for() {
    auto node = std::make_unique<ForStmt>(expect_name("for").line);
    node->target = parse_assign_target(true, {"in"}, false);
    expect_name("in");
    node->iter = parse_tuple(false, false, {"recursive"}, false);
    if (skip_name("if")) node->filter = parse_expression(true);
    node->recursive = skip_name("recursive");
    ++loop_depth_;
    node->body = parse_statements({"endfor", "else"}, false);
    --loop_depth_;
    if (next().value != "endfor") node->else_body = parse_statements({"endfor"}, true);
    return node;
  }

  StmtPtr parse_if() {
    auto node = std::make_unique<IfStmt>(expect_name("if").line);
    while (true) {
      node->branch_lines.push_back(cur().line);
      ExprPtr test = parse_tuple(false, false, {}, false);
      Body body = parse_statements({"elif", "else", "endif"}, false);
      node->branches.emplace_back(std::move(test), std::move(body));
      const Token& t = next();
      if (is_name(t, "elif")) continue;
      if (is_name(t, "else")) node->else_body = parse_statements({"endif"}, true);
      break;
    }
    return node;
  }

  StmtPtr parse_set() {
    int line = next().line;
    Target target = parse_assign_target(true, {}, true);
    if (skip_op("=")) {
      auto node = std::make_unique<SetStmt>(line);
      node->target = std::move(target);
      node->value = parse_tuple(false, true, {}, false);
      return node;
    }
    auto node = std::make_unique<SetBlockStmt>(line);
    node->target = std::move(target);
    node->filter = parse_filter(nullptr, false);
    node->body = parse_statements({"endset"}, true);
    return node;
  }

  void parse_signature(MacroDef& def) {
    expect_op("(");
    while (!is_op(")")) {
      if (!def.params.empty()) expect_op(",");
      def.params.push_back(expect_type(TokenType::kName).value);
      if (skip_op("=")) {
        def.defaults.push_back(parse_expression(true));
      } else if (!def.defaults.empty()) {
        fail("non-default argument follows default argument");
      }
    }
    expect_op(")");
  }

  StmtPtr parse_macro() {
    auto node = std::make_unique<MacroStmt>(next().line);
    node->def.name = expect_type(TokenType::kName).value;
    parse_signature(node->def);
    node->def.body = parse_function_body({"endmacro"});
    scan_special_names(node->def);
    return node;
  }

  StmtPtr parse_call_block() {
    auto node = std::make_unique<CallBlockStmt>(next().line);
    node->caller.name = "caller";
    if (is_op("(")) parse_signature(node->caller);
    node->call = parse_expression(true);
    if (node->call->kind != ExprKind::kCall) fail("expected call", node->line);
    node->caller.body = parse_function_body({"endcall"});
    scan_special_names(node->caller);
    return node;
  }

  StmtPtr parse_filter_block() {
    auto node = std::make_unique<FilterBlockStmt>(next().line);
    node->filter = parse_filter(nullptr, true);
    node->body = parse_statements({"endfilter"}, true);
    return node;
  }

  StmtPtr parse_with() {
    auto node = std::make_unique<WithStmt>(next().line);
    while (cur().type != TokenType::kBlockEnd) {
      if (!node->assignments.empty()) expect_op(",");
      Target target = parse_assign_target(true, {}, false);
      expect_op("=");
      node->assignments.emplace_back(std::move(target), parse_expression(true));
    }
    node->body = parse_statements({"endwith"}, true);
    return node;
  }

  StmtPtr parse_scope(const std::string& tag) {
    auto node = std::make_unique<ScopeStmt>(next().line);
    std::string block_name;
    if (tag == "block") {
      block_name = expect_type(TokenType::kName).value;
      skip_name("scoped");
      skip_name("required");
      if (is_op("-")) {
        fail(
            "Block names in Jinja have to be valid Python identifiers and may not contain "
            "hyphens, use an underscore instead.");
      }
    } else if (tag == "autoescape") {
      parse_expression(true);
    }
    node->body = parse_statements({"end" + tag}, true);
    if (!block_name.empty()) skip_name(block_name.c_str());
    return node;
  }

  // ---- assignment targets

  Target parse_assign_target(bool with_tuple, const EndTokens& extra_end, bool with_namespace) {
    ExprPtr expr = with_tuple ? parse_tuple(true, true, extra_end, false, with_namespace)
                              : parse_primary(with_namespace);
    return to_target(*expr);
  }

  Target to_target(const Expr& e) {
    Target t;
    if (e.kind == ExprKind::kName) {
      t.name = static_cast<const NameExpr&>(e).name;
      return t;
    }
    if (e.kind == ExprKind::kGetAttr && static_cast<const GetAttrExpr&>(e).nsref) {
      const auto& g = static_cast<const GetAttrExpr&>(e);
      t.kind = Target::Kind::kNamespaceAttr;
      t.name = static_cast<const NameExpr&>(*g.object).name;
      t.attr = g.attr;
      return t;
    }
    if (e.kind == ExprKind::kTuple) {
      t.kind = Target::Kind::kTuple;
      for (const ExprPtr& item : static_cast<const SequenceExpr&>(e).items) {
        t.items.push_back(to_target(*item));
      }
      return t;
    }
    static const char* const kNames[] = {
        "const", "name",   "getattr", "getitem", "slice",    "list", "tuple",  "dict",
        "unary", "binary", "concat",  "compare", "condexpr", "call", "filter", "test"};
    fail(std::string("can't assign to '") + kNames[static_cast<int>(e.kind)] + "'", e.line);
  }

  // ---- expressions

  ExprPtr parse_expression(bool with_condexpr) {
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprPtr parse_condexpr() {
    DepthGuard guard(*this);
    int line = cur().line;
    ExprPtr expr = parse_or();
    while (skip_name("if")) {
      auto node = std::make_unique<CondExpr>(line);
      node->then = std::move(expr);
      node->test = parse_or();
      if (skip_name("else")) node->otherwise = parse_condexpr();
      expr = sized(std::move(node));
      line = cur().line;
    }
    return expr;
  }

  ExprPtr parse_or() {
    int line = cur().line;
    ExprPtr left = parse_and();
    while (skip_name("or")) {
      left = sized(std::make_unique<BinaryExpr>(BinaryOp::kOr, std::move(left), parse_and(), line));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_and() {
    int line = cur().line;
    ExprPtr left = parse_not();
    while (skip_name("and")) {
      left =
          sized(std::make_unique<BinaryExpr>(BinaryOp::kAnd, std::move(left), parse_not(), line));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_not() {
    DepthGuard guard(*this);
    if (is_name("not")) {
      int line = next().line;
      return sized(std::make_unique<UnaryExpr>(UnaryOp::kNot, parse_not(), line));
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    int line = cur().line;
    ExprPtr expr = parse_math1();
    std::unique_ptr<CompareExpr> node;
    while (true) {
      std::optional<CompareOp> op;
      const Token& t = cur();
      if (t.type == TokenType::kOperator) {
        if (t.value == "==") op = CompareOp::kEq;
        if (t.value == "!=") op = CompareOp::kNe;
        if (t.value == "<") op = CompareOp::kLt;
        if (t.value == "<=") op = CompareOp::kLe;
        if (t.value == ">") op = CompareOp::kGt;
        if (t.value == ">=") op = CompareOp::kGe;
        if (op) next();
      } else if (is_name("in")) {
        next();
        op = CompareOp::kIn;
      } else if (is_name("not") && is_name(look(), "in")) {
        next();
        next();
        op = CompareOp::kNotIn;
      }
      if (!op) break;
      if (!node) node = std::make_unique<CompareExpr>(std::move(expr), line);
      node->ops.emplace_back(*op, parse_math1());
      node->line = cur().line;
    }
    if (node) return sized(std::move(node));
    return expr;
  }

  ExprPtr parse_math1() {
    int line = cur().line;
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      BinaryOp op = next().value == "+" ? BinaryOp::kAdd : BinaryOp::kSub;
      left = sized(std::make_unique<BinaryExpr>(op, std::move(left), parse_concat(), line));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_concat() {
    int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto node = std::make_unique<ConcatExpr>(line);
    node->parts.push_back(std::move(first));
    while (skip_op("~")) node->parts.push_back(parse_math2());
    return sized(std::move(node));
  }

  ExprPtr parse_math2() {
    int line = cur().line;
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const std::string& v = next().value;
      BinaryOp op = v == "*"    ? BinaryOp::kMul
                    : v == "/"  ? BinaryOp::kDiv
                    : v == "//" ? BinaryOp::kFloorDiv
                                : BinaryOp::kMod;
      left = sized(std::make_unique<BinaryExpr>(op, std::move(left), parse_pow(), line));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_pow() {
    int line = cur().line;
    ExprPtr left = parse_unary(true);
    while (skip_op("**")) {
      left = sized(
          std::make_unique<BinaryExpr>(BinaryOp::kPow, std::move(left), parse_unary(true), line));
      line = cur().line;
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    DepthGuard guard(*this);
    int line = cur().line;
    ExprPtr node;
    if (skip_op("-")) {
      node = sized(std::make_unique<UnaryExpr>(UnaryOp::kNeg, parse_unary(false), line));
    } else if (skip_op("+")) {
      node = sized(std::make_unique<UnaryExpr>(UnaryOp::kPos, parse_unary(false), line));
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary(bool with_namespace) {
    DepthGuard guard(*this);
    const Token& tok = cur();
    int line = tok.line;
    if (tok.type == TokenType::kName) {
      std::string name = next().value;
      if (name == "true" || name == "True") return std::make_unique<ConstExpr>(Value(true), line);
      if (name == "false" || name == "False")
        return std::make_unique<ConstExpr>(Value(false), line);
      if (name == "none" || name == "None") return std::make_unique<ConstExpr>(Value::none(), line);
      if (with_namespace && is_op(".")) {
        next();
        std::string attr = expect_type(TokenType::kName).value;
        auto node =
            std::make_unique<GetAttrExpr>(std::make_unique<NameExpr>(name, line), attr, line);
        node->nsref = true;
        return node;
      }
      return std::make_unique<NameExpr>(name, line);
    }
    if (tok.type == TokenType::kString) {
      std::string text;
      while (cur().type == TokenType::kString) text += next().value;
      return std::make_unique<ConstExpr>(Value(std::move(text)), line);
    }
    if (tok.type == TokenType::kInteger)
      return std::make_unique<ConstExpr>(Value(next().int_value), line);
    if (tok.type == TokenType::kFloat)
      return std::make_unique<ConstExpr>(Value(next().float_value), line);
    if (is_op("(")) {
      next();
      ExprPtr node = parse_tuple(false, true, {}, true);
      expect_op(")");
      return node;
    }
    if (is_op("[")) return parse_list();
    if (is_op("{")) return parse_dict();
    fail("unexpected '" + describe_token(tok) + "'", line);
  }

  bool is_tuple_end(const EndTokens& extra_end) const {
    const Token& t = cur();
    if (t.type == TokenType::kVariableEnd || t.type == TokenType::kBlockEnd || is_op(t, ")"))
      return true;
    return matches_any(extra_end);
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const EndTokens& extra_end,
                      bool explicit_parentheses, bool with_namespace = false) {
    int line = cur().line;
    auto node = std::make_unique<SequenceExpr>(ExprKind::kTuple, line);
    bool is_tuple = false;
    while (true) {
      if (!node->items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      node->items.push_back(simplified ? parse_primary(with_namespace)
                                       : parse_expression(with_condexpr));
      if (is_op(",")) {
        is_tuple = true;
      } else {
        break;
      }
      line = cur().line;
    }
    if (!is_tuple) {
      if (!node->items.empty()) return std::move(node->items[0]);
      if (!explicit_parentheses)
        fail("Expected an expression, got '" + describe_token(cur()) + "'");
    }
    return sized(std::move(node));
  }

  ExprPtr parse_list() {
    auto node = std::make_unique<SequenceExpr>(ExprKind::kList, expect_op("[").line);
    while (!is_op("]")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("]")) break;
      node->items.push_back(parse_expression(true));
    }
    expect_op("]");
    return sized(std::move(node));
  }

  ExprPtr parse_dict() {
    auto node = std::make_unique<DictExpr>(expect_op("{").line);
    while (!is_op("}")) {
      if (!node->items.empty()) expect_op(",");
      if (is_op("}")) break;
      ExprPtr key = parse_expression(true);
      expect_op(":");
      node->items.emplace_back(std::move(key), parse_expression(true));
    }
    expect_op("}");
    return sized(std::move(node));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    while (true) {
      if (is_op(".") || is_op("[")) {
        node = parse_subscript(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    while (true) {
      if (is_op("|")) {
        node = parse_filter(std::move(node), false);
      } else if (is_name("is")) {
        node = parse_test(std::move(node));
      } else if (is_op("(")) {
        node = parse_call(std::move(node));
      } else {
        return node;
      }
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    DepthGuard guard(*this);
    const Token& tok = next();
    int line = tok.line;
    if (tok.value == ".") {
      const Token& attr = next();
      if (attr.type == TokenType::kName)
        return sized(std::make_unique<GetAttrExpr>(std::move(node), attr.value, line));
      if (attr.type != TokenType::kInteger) fail("expected name or number", attr.line);
      return sized(std::make_unique<GetItemExpr>(
          std::move(node), std::make_unique<ConstExpr>(Value(attr.int_value), attr.line), line));
    }
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    if (args.size() == 1)
      return sized(std::make_unique<GetItemExpr>(std::move(node), std::move(args[0]), line));
    auto tuple = std::make_unique<SequenceExpr>(ExprKind::kTuple, line);
    tuple->items = std::move(args);
    return sized(std::make_unique<GetItemExpr>(std::move(node), sized(std::move(tuple)), line));
  }

  ExprPtr parse_subscribed() {
    int line = cur().line;
    auto slice = std::make_unique<SliceExpr>(line);
    if (is_op(":")) {
      next();
    } else {
      ExprPtr first = parse_expression(true);
      if (!is_op(":")) return first;
      next();
      slice->start = std::move(first);
    }
    if (!is_op(":") && !is_op("]") && !is_op(",")) slice->stop = parse_expression(true);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) slice->step = parse_expression(true);
    }
    return sized(std::move(slice));
  }

  CallArgsExpr parse_call_args() {
    const Token& open = expect_op("(");
    int line = open.line;
    CallArgsExpr args;
    bool require_comma = false;
    auto ensure = [&](bool ok) {
      if (!ok) fail("invalid syntax for function call expression", line);
    };
    while (!is_op(")")) {
      if (require_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*")) {
        ensure(!args.star_args && !args.star_kwargs);
        next();
        args.star_args = parse_expression(true);
      } else if (is_op("**")) {
        ensure(!args.star_kwargs);
        next();
        args.star_kwargs = parse_expression(true);
      } else if (cur().type == TokenType::kName && is_op(look(), "=")) {
        ensure(!args.star_kwargs);
        std::string key = next().value;
        next();
        for (const auto& kw : args.keywords) {
          if (kw.first == key) fail("keyword argument repeated: " + key, line);
        }
        args.keywords.emplace_back(key, parse_expression(true));
      } else {
        ensure(!args.star_args && !args.star_kwargs && args.keywords.empty());
        args.positional.push_back(parse_expression(true));
      }
      require_comma = true;
    }
    expect_op(")");
    return args;
  }

  ExprPtr parse_call(ExprPtr node) {
    DepthGuard guard(*this);
    auto call = std::make_unique<CallExpr>(std::move(node), cur().line);
    call->args = parse_call_args();
    return sized(std::move(call));
  }

  std::string parse_dotted_name() {
    std::string name = expect_type(TokenType::kName).value;
    while (skip_op(".")) name += "." + expect_type(TokenType::kName).value;
    return name;
  }

  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    DepthGuard guard(*this);
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      int line = cur().line;
      auto filter = std::make_unique<FilterExpr>(std::move(node), parse_dotted_name(), line);
      if (is_op("(")) filter->args = parse_call_args();
      node = sized(std::move(filter));
      start_inline = false;
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    DepthGuard guard(*this);
    int line = next().line;
    bool negated = skip_name("not");
    auto test = std::make_unique<TestExpr>(std::move(node), parse_dotted_name(), line);
    const Token& t = cur();
    if (is_op("(")) {
      test->args = parse_call_args();
    } else if ((t.type == TokenType::kName || t.type == TokenType::kString ||
                t.type == TokenType::kInteger || t.type == TokenType::kFloat || is_op("[") ||
                is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("You cannot chain multiple tests with is");
      test->args.positional.push_back(parse_postfix(parse_primary(false)));
    }
    if (negated)
      return sized(std::make_unique<UnaryExpr>(UnaryOp::kNot, sized(std::move(test)), line));
    return sized(std::move(test));
  }

  // jinja2 decides whether a macro accepts extra positional/keyword arguments and a caller by
  // whether its body mentions `varargs`, `kwargs` and `caller`.
  static void scan_special_names(MacroDef& def);

  std::vector<Token> toks_;
  ParserOptions opt_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  std::vector<EndTokens> end_stack_;
  std::vector<std::string> tag_stack_;
};

void Parser::scan_special_names(MacroDef& def) {
  auto stmt_fn = [](const Stmt&) {};
  auto expr_fn = [&](const Expr& e) {
    if (e.kind == ExprKind::kName) {
      const std::string& n = static_cast<const NameExpr&>(e).name;
      def.uses_caller |= n == "caller";
      def.uses_varargs |= n == "varargs";
      def.uses_kwargs |= n == "kwargs";
    }
    return true;
  };
  visit_macro(def, stmt_fn, expr_fn);
}

// jinja2 checks filter and test names when compiling, except inside `if` statements and
// conditional expressions ("soft" frames), where a missing one only fails if it runs.
void check_names_expr(const Expr* e, bool soft);

void check_names_body(const Body& body, bool soft) {
  for (const StmtPtr& s : body) {
    switch (s->kind) {
      case StmtKind::kPrint:
        check_names_expr(static_cast<const PrintStmt&>(*s).expr.get(), soft);
        break;
      case StmtKind::kIf:
        for (const auto& [test, b] : static_cast<const IfStmt&>(*s).branches) {
          check_names_expr(test.get(), true);
          check_names_body(b, true);
        }
        check_names_body(static_cast<const IfStmt&>(*s).else_body, true);
        break;
      case StmtKind::kFor: {
        const auto& f = static_cast<const ForStmt&>(*s);
        check_names_expr(f.iter.get(), soft);
        check_names_expr(f.filter.get(), false);
        check_names_body(f.body, false);
        check_names_body(f.else_body, false);
        break;
      }
      case StmtKind::kSet:
        check_names_expr(static_cast<const SetStmt&>(*s).value.get(), soft);
        break;
      case StmtKind::kSetBlock:
        check_names_expr(static_cast<const SetBlockStmt&>(*s).filter.get(), soft);
        check_names_body(static_cast<const SetBlockStmt&>(*s).body, false);
        break;
      case StmtKind::kMacro:
      case StmtKind::kCallBlock: {
        const MacroDef& def = s->kind == StmtKind::kMacro
                                  ? static_cast<const MacroStmt&>(*s).def
                                  : static_cast<const CallBlockStmt&>(*s).caller;
        if (s->kind == StmtKind::kCallBlock) {
          check_names_expr(static_cast<const CallBlockStmt&>(*s).call.get(), soft);
        }
        for (const ExprPtr& d : def.defaults) check_names_expr(d.get(), false);
        check_names_body(def.body, false);
        break;
      }
      case StmtKind::kFilterBlock:
        check_names_expr(static_cast<const FilterBlockStmt&>(*s).filter.get(), soft);
        check_names_body(static_cast<const FilterBlockStmt&>(*s).body, false);
        break;
      case StmtKind::kWith:
        for (const auto& a : static_cast<const WithStmt&>(*s).assignments)
          check_names_expr(a.second.get(), soft);
        check_names_body(static_cast<const WithStmt&>(*s).body, false);
        break;
      case StmtKind::kScope:
        check_names_body(static_cast<const ScopeStmt&>(*s).body, false);
        break;
      default:
        break;
    }
  }
}

void check_names_expr(const Expr* e, bool soft) {
  auto fn = [soft](const Expr& x) {
    if (x.kind == ExprKind::kCondExpr) {
      auto& c = static_cast<const CondExpr&>(x);
      check_names_expr(c.test.get(), true);
      check_names_expr(c.then.get(), true);
      check_names_expr(c.otherwise.get(), true);
      return false;
    }
    if (soft) return true;
    if (x.kind == ExprKind::kFilter) {
      const std::string& name = static_cast<const FilterExpr&>(x).name;
      if (!find_filter(name)) {
        throw JinjaError("TemplateAssertionError", "No filter named '" + name + "'.", x.line);
      }
    } else if (x.kind == ExprKind::kTest) {
      const std::string& name = static_cast<const TestExpr&>(x).name;
      if (!find_test(name)) {
        throw JinjaError("TemplateAssertionError", "No test named '" + name + "'.", x.line);
      }
    }
    return true;
  };
  visit_exprs(e, fn);
}

}  // namespace

std::unique_ptr<TemplateAst> parse_template(std::string_view source, const ParserOptions& options) {
  Parser parser(tokenize(source, options.lexer), options);
  std::unique_ptr<TemplateAst> ast = parser.parse();
  check_names_body(ast->body, false);
  return ast;
}

}  // namespace cvllm::jinja
