// A Jinja2-compatible template engine for chat templates, in C++ with no Python: templates render
// to the same bytes as Python jinja2 in the environment transformers builds for chat templates
// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, `{% generation %}`,
// tojson without HTML escaping, globals raise_exception/strftime_now, transformers' namespace).
//
//   auto tmpl = cvllm::jinja::Template::parse(text);          // cvllm::ValueError on syntax errors
//   cvllm::jinja::Dict vars;
//   vars.set("messages", cvllm::jinja::from_json(messages));
//   std::string prompt = tmpl.render(cvllm::jinja::Value::dict(vars));
//
// Errors (syntax, undefined names used as values, raise_exception, type errors, limits) come out
// as cvllm::ValueError("chat template line N: ..."). Limits bound hostile templates.
#pragma once

#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "chat/jinja_interpreter.h"
#include "chat/jinja_value.h"

namespace cvllm::jinja {

struct TemplateAst;

struct TemplateOptions {
  bool trim_blocks = true;  // as transformers sets them
  bool lstrip_blocks = true;
  int max_nesting_depth = 256;  // parser: nested blocks and expressions
  RenderLimits limits;          // render: call depth, loop iterations, output size
};

class Template {
 public:
  // Throws cvllm::ValueError "chat template line N: TemplateSyntaxError: ...".
  static Template parse(std::string_view source, TemplateOptions options = {});

  // `globals`: a dict of template variables (undefined or none for none). Safe to call from
  // several threads at once. Throws cvllm::ValueError "chat template line N: ...".
  std::string render(const Value& globals) const;

  // vLLM's "auto" content-format detection (vllm/renderers/hf.py::_detect_content_format): true
  // when the template loops over a message's `content` (so it wants OpenAI-style lists of parts),
  // false when it expects content as a string.
  bool iterates_message_content() const;

  // Every variable name the template reads, anywhere (a superset of jinja2.meta's undeclared
  // variables). vLLM keeps only the chat_template_kwargs a template can see; this answers that.
  std::set<std::string> referenced_names() const;

  const std::string& source() const { return *source_; }

 private:
  std::shared_ptr<const TemplateAst> ast_;
  std::shared_ptr<const std::string> source_;
  TemplateOptions options_;
};

// The message of a JinjaError as Template reports it: "chat template line N: Type: message"
// (raise_exception's message is given as is, without a type).
std::string format_error(const JinjaError& e);

}  // namespace cvllm::jinja
