// Chat templates as vLLM applies them: load a template (file or literal text, vLLM's rules),
// normalize OpenAI-style messages the way vLLM's chat_utils does, decide the content format
// ("auto" detection), and render with transformers' apply_chat_template(tokenize=False)
// semantics: special tokens and chat_template_kwargs as template variables, None-valued message
// keys dropped, reasoning aliases, add_generation_prompt, continue_final_message (render, then
// cut right after the final message's content so the model continues it).
//
// JSON in and out is nlohmann::ordered_json so objects keep the order the client sent them in, as
// Python dicts do (templates that iterate tool schemas show that order). A plain nlohmann::json
// converts implicitly, with its keys in sorted order.
#pragma once

#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "chat/jinja.h"

namespace cvllm {

struct ChatTemplateInputs {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();  // normalized messages
  nlohmann::ordered_json tools = nullptr;      // [{"type": "function", "function": {...}}] or null
  nlohmann::ordered_json documents = nullptr;  // RAG documents or null
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  // The tokenizer's special tokens map: bos_token, eos_token, unk_token, pad_token, ...
  std::map<std::string, std::string> special_tokens;
  // chat_template_kwargs (enable_thinking, reasoning_effort, ...); they override special tokens.
  nlohmann::ordered_json kwargs = nlohmann::ordered_json::object();
  // Pins strftime_now to this local time ("YYYY-MM-DD[ HH:MM[:SS]]"), for reproducible prompts and
  // tests. Empty: the environment variable CVLLM_STRFTIME_NOW if set, else the clock.
  std::string now;
};

// A parsed chat template, reusable across requests and threads.
class ChatTemplate {
 public:
  explicit ChatTemplate(const std::string& text, jinja::TemplateOptions options = {});

  // transformers' apply_chat_template(..., tokenize=False). Throws cvllm::ValueError.
  std::string apply(const ChatTemplateInputs& inputs) const;

  // "string" or "openai" for a given --chat-template-content-format ("auto" detects).
  std::string resolve_content_format(const std::string& given) const;

  const std::string& text() const { return template_.source(); }
  const jinja::Template& jinja_template() const { return template_; }

 private:
  jinja::Template template_;
};

// Parses (with a small cache of recent templates, as vLLM's lru_cache) and applies.
std::string apply_chat_template(const std::string& chat_template, const ChatTemplateInputs& inputs);

// vLLM's message parsing before rendering (chat_utils.parse_chat_messages for text-only models):
// content null -> "" (string format) or [] (openai format); string content or lists of text parts
// joined with "\n" (string) or kept as [{"type": "text", "text": ...}] (openai); assistant
// `tool_calls` kept, their JSON-string `arguments` parsed to objects ({} when not JSON; an empty
// tool_calls list dropped); `reasoning` kept as `reasoning` and `reasoning_content`; tool
// messages' text parts flattened to a string; `name`, `tool_call_id`, `task` kept; developer
// messages get `tools`. Media parts raise ValueError (text-only models).
// `content_format`: "auto" (detected from `chat_template`), "string" or "openai".
nlohmann::ordered_json normalize_messages(const nlohmann::ordered_json& openai_messages,
                                          const std::string& content_format,
                                          const std::string& chat_template);

// vLLM's content-format detection for --chat-template-content-format auto: "openai" when the
// template loops over a message's content, else "string" (also when it does not parse).
std::string detect_content_format(const std::string& chat_template);

// vLLM's load_chat_template: the contents of the file at `path_or_text` if it can be opened;
// otherwise, if the string has none of '{', '}', '\n' it is taken for a path and ValueError is
// thrown; otherwise it is the template text itself.
std::string load_chat_template(const std::string& path_or_text);

}  // namespace cvllm
