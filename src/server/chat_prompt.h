// Turns chat messages into the prompt the model sees: picks the chat template (the request's,
// when --trust-request-chat-template allows it; else --chat-template; else the model's own),
// normalizes the OpenAI messages, renders the template, and tokenizes the text (without adding
// special tokens unless asked: the template writes BOS itself). Used by chat completions,
// /tokenize (chat form) and /v1/chat/completions/render.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/json_util.h"

namespace cvllm::server {

class ServingContext;

struct ChatPromptRequest {
  const Json* messages = nullptr;            // validated array of message objects
  const Json* tools = nullptr;               // null or array
  std::optional<std::string> chat_template;  // from the request
  Json chat_template_kwargs = Json::object();
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  bool add_special_tokens = false;
};

struct RenderedChat {
  std::string prompt_text;
  std::vector<int32_t> token_ids;
  Json conversation;  // the normalized messages (echo reads the last one)
};

// vLLM's load_chat_template: a file path, else the literal template text. A string that looks
// like a path (no braces, no newline) but names no file is a ValueError.
std::string load_chat_template_source(const std::string& path_or_text);

// Throws ApiError: 400 for an untrusted request template, a template that fails to render, or a
// model without a template; 500 when chat templates are not available in this build.
RenderedChat render_chat_prompt(const ServingContext& ctx, const ChatPromptRequest& request);

}  // namespace cvllm::server
