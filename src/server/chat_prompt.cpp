#include "server/chat_prompt.h"

#include "chat/chat_template.h"
#include "engine/chat_renderer.h"
#include "server/api_error.h"
#include "server/serving_context.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace cvllm::server {
namespace {

// vLLM's resolve_chat_template, server side: the request's template only when
// --trust-request-chat-template allows it, else --chat-template; the model's own is render_chat's
// fallback.
std::optional<std::string> explicit_template(const ServingContext& ctx, const ChatPromptRequest& request) {
  if (request.chat_template) {
    if (!ctx.config().trust_request_chat_template) {
      throw bad_request(
          "Chat template is passed with request, but --trust-request-chat-template is not "
          "set. Refused request with untrusted chat template.",
          "chat_template");
    }
    return load_chat_template(*request.chat_template);
  }
  return ctx.config().chat_template;
}

}  // namespace

std::string load_chat_template_source(const std::string& path_or_text) {
  return load_chat_template(path_or_text);
}

RenderedChat render_chat_prompt(const ServingContext& ctx, const ChatPromptRequest& request) {
  ChatRenderOptions options;
  options.chat_template = explicit_template(ctx, request);
  if (request.tools) options.tools = *request.tools;
  options.add_generation_prompt = request.add_generation_prompt;
  options.continue_final_message = request.continue_final_message;
  options.chat_template_kwargs = request.chat_template_kwargs;
  options.add_special_tokens = request.add_special_tokens;
  try {
    cvllm::RenderedChat rendered = render_chat(ctx.engine().engine(), *request.messages, options);
    return RenderedChat{std::move(rendered.prompt_text), std::move(rendered.token_ids),
                        std::move(rendered.conversation)};
  } catch (const ValueError& e) {
    throw bad_request(e.what());  // vLLM: jinja's TemplateError and ValueError are 400s
  }
}

}  // namespace cvllm::server
