// Chat: OpenAI-style messages rendered with the model's chat template (vLLM's LLM.chat).
//
//   cvllm::LLM llm({.model = "SmolLM2-135M-Instruct.Q4_1.gguf"});
//   cvllm::Conversation conversation = {
//       {"system", "You are a helpful assistant"},
//       {"user", "Hello"},
//       {"assistant", "Hello! How can I assist you today?"},
//       {"user", "Write an essay about the importance of higher education."}};
//   auto outputs = llm.chat(conversation, {.temperature = 0.5});
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace cvllm {

struct ChatMessage {
  std::string role;     // "system", "user", "assistant", "tool", ...
  std::string content;
};
using Conversation = std::vector<ChatMessage>;

struct ChatOptions {
  // Template text to use instead of the model's own (see load_chat_template).
  std::optional<std::string> chat_template;
  std::string chat_template_content_format = "auto";  // "auto", "string" or "openai"
  bool add_generation_prompt = true;
  bool continue_final_message = false;  // continue the last (assistant) message instead
  std::string tools_json;                 // optional: a JSON array of OpenAI tool definitions
  std::string chat_template_kwargs_json;  // optional: a JSON object of extra template variables
};

// vLLM's load_chat_template: the contents of a file, or the argument itself when it is template
// text. A path-like string naming no file is a ValueError.
std::string load_chat_template(const std::string& path_or_text);

}  // namespace cvllm
