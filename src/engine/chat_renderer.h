// Renders chat messages into the prompt a model receives, as vLLM does for LLM.chat and the chat
// API: resolve the template (explicit, else the model's own, else vLLM's error), normalize the
// OpenAI messages, apply the template with the tokenizer's special tokens as variables, and
// tokenize the text without adding special tokens again (the template writes BOS itself).
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace cvllm {

class LLMEngine;
class Tokenizer;

struct ChatRenderOptions {
  std::optional<std::string> chat_template;  // template text; else the model's own
  std::string content_format = "auto";
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  nlohmann::ordered_json tools = nullptr;
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
  bool add_special_tokens = false;
};

struct RenderedChat {
  std::string prompt_text;
  std::vector<int32_t> token_ids;
  nlohmann::ordered_json conversation;  // the normalized messages
};

// transformers' special-tokens map (bos_token, eos_token, unk_token, pad_token) as text.
std::map<std::string, std::string> special_tokens_of(const Tokenizer& tokenizer);

// Throws ValueError: no template (vLLM's message), both add_generation_prompt and
// continue_final_message, malformed messages, or a template that raises. `model_template` is the
// model's own (GGUF tokenizer.chat_template), used when options.chat_template is empty.
RenderedChat render_chat(const Tokenizer& tokenizer, const std::optional<std::string>& model_template,
                         const nlohmann::ordered_json& messages, const ChatRenderOptions& options);
RenderedChat render_chat(const LLMEngine& engine, const nlohmann::ordered_json& messages,
                         const ChatRenderOptions& options);

}  // namespace cvllm
