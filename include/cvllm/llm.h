// The offline inference entry point, vLLM's `LLM` class:
//
//   cvllm::LLM llm({.model = "SmolLM2-135M-Instruct.Q4_1.gguf"});
//   auto outputs = llm.generate({"Hello, my name is"}, {.temperature = 0.8, .top_p = 0.95});
//   std::cout << outputs[0].prompt.value() << outputs[0].outputs[0].text;
//
// Prompts run batched through one engine; outputs come back in input order.
#pragma once

#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cvllm/beam_search.h"
#include "cvllm/chat.h"
#include "cvllm/engine_args.h"
#include "cvllm/outputs.h"
#include "cvllm/sampling_params.h"

namespace cvllm {

class LLMEngine;
class Tokenizer;

// A text prompt (tokenized with special tokens added) or a token-id prompt (vLLM's TextPrompt /
// TokensPrompt). Converts implicitly from a string or a vector of ids.
class Prompt {
 public:
  Prompt(const char* text) : text_(text) {}
  Prompt(std::string text) : text_(std::move(text)) {}
  Prompt(std::vector<int32_t> token_ids) : token_ids_(std::move(token_ids)) {}

  const std::optional<std::string>& text() const { return text_; }
  const std::vector<int32_t>& token_ids() const { return token_ids_; }
  bool is_tokens() const { return !text_.has_value(); }

  // Prefix-cache isolation: requests share cached blocks only with the same salt.
  std::string cache_salt;

 private:
  std::optional<std::string> text_;
  std::vector<int32_t> token_ids_;
};

// One prompt or many, as vLLM's `prompts` argument accepts: "text", {"a", "b"}, a vector of
// strings, or a vector<int32_t> of token ids (one prompt).
class PromptList {
 public:
  PromptList(const char* text) : prompts_{Prompt(text)} {}
  PromptList(std::string text) : prompts_{Prompt(std::move(text))} {}
  PromptList(std::vector<int32_t> token_ids) : prompts_{Prompt(std::move(token_ids))} {}
  PromptList(Prompt prompt) : prompts_{std::move(prompt)} {}
  PromptList(std::initializer_list<Prompt> prompts) : prompts_(prompts) {}
  PromptList(std::vector<Prompt> prompts) : prompts_(std::move(prompts)) {}
  PromptList(const std::vector<std::string>& texts) : prompts_(texts.begin(), texts.end()) {}

  const std::vector<Prompt>& prompts() const { return prompts_; }

 private:
  std::vector<Prompt> prompts_;
};

class LLM {
 public:
  // Loads the model and tokenizer. Throws ValueError for bad arguments (unknown file, bad dtype)
  // and Error for malformed model files.
  explicit LLM(const EngineArgs& args);
  ~LLM();
  LLM(const LLM&) = delete;
  LLM& operator=(const LLM&) = delete;

  // Generates for every prompt with the same parameters and returns outputs in input order. Shows
  // a progress bar on a terminal when use_tqdm is true.
  std::vector<RequestOutput> generate(const PromptList& prompts, const SamplingParams& params,
                                      bool use_tqdm = true);
  // With the model's default sampling parameters (get_default_sampling_params()).
  std::vector<RequestOutput> generate(const PromptList& prompts);
  // One SamplingParams per prompt; a length mismatch is a ValueError. `priority` (one per prompt,
  // lower runs first) matters only with scheduling_policy = "priority".
  std::vector<RequestOutput> generate(const PromptList& prompts,
                                      const std::vector<SamplingParams>& params,
                                      bool use_tqdm = true, const std::vector<int>& priority = {});

  // Beam search (the seed's `llm.generate(prompt, BeamSearchParams(beam_width=5, max_tokens=50))`):
  // one RequestOutput per prompt with beam_width completions, generated part only, best first.
  std::vector<RequestOutput> generate(const PromptList& prompts, const BeamSearchParams& params,
                                      bool use_tqdm = true);
  // vLLM's LLM.beam_search: sequences carry prompt + generated tokens and the full decoded text.
  std::vector<BeamSearchOutput> beam_search(const PromptList& prompts, const BeamSearchParams& params,
                                            bool use_tqdm = false);

  // vLLM's LLM.chat: renders each conversation with the chat template (ChatOptions::chat_template,
  // else the model's own) and generates. One output per conversation, in order.
  std::vector<RequestOutput> chat(const Conversation& conversation, const SamplingParams& params,
                                  const ChatOptions& options = {}, bool use_tqdm = true);
  std::vector<RequestOutput> chat(const Conversation& conversation);
  // Several conversations. A template taking exactly std::vector<Conversation>, so that a braced
  // list of messages, `llm.chat({{"user", "Hi"}}, ...)`, is one conversation and not ambiguous.
  template <typename Conversations>
    requires std::same_as<Conversations, std::vector<Conversation>>
  std::vector<RequestOutput> chat(const Conversations& conversations, const SamplingParams& params,
                                  const ChatOptions& options = {}, bool use_tqdm = true) {
    return chat_many(conversations, params, options, use_tqdm);
  }
  // The same with messages in OpenAI's JSON shape (content parts, tool_calls, name, ...): one
  // conversation (a JSON array of messages) or several (an array of such arrays).
  std::vector<RequestOutput> chat_json(const std::string& messages_json, const SamplingParams& params,
                                       const ChatOptions& options = {}, bool use_tqdm = true);

  // SamplingParams with the model's generation_config.json defaults applied (vLLM's
  // get_default_sampling_params).
  SamplingParams get_default_sampling_params() const;
  const Tokenizer& get_tokenizer() const;
  LLMEngine& engine() { return *engine_; }

 private:
  std::vector<RequestOutput> chat_many(const std::vector<Conversation>& conversations,
                                       const SamplingParams& params, const ChatOptions& options,
                                       bool use_tqdm);

  std::unique_ptr<LLMEngine> engine_;
  int64_t next_request_id_ = 0;
};

}  // namespace cvllm
