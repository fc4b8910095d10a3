// The OpenAI-compatible request bodies (vLLM's CompletionRequest, ChatCompletionRequest,
// TokenizeRequest, DetokenizeRequest) as plain structs, parsed and validated from JSON. Parsing
// needs no model: what depends on the model (vocabulary bounds, context length, the chat template)
// is checked by the serving code. Every malformed or out-of-range field throws ApiError(400) naming
// the field; unknown fields are accepted and ignored, as vLLM does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "cvllm/beam_search.h"
#include "cvllm/sampling_params.h"
#include "server/json_util.h"

namespace cvllm::server {

struct StreamOptions {
  bool include_usage = false;
  bool continuous_usage_stats = false;
};

// One completion prompt: text, or token ids when text is absent.
struct PromptInput {
  std::optional<std::string> text;
  std::vector<int32_t> token_ids;
};

// Fields both generation APIs share: vLLM's sampling extras plus the request bookkeeping.
struct GenerationFields {
  std::optional<std::string> model;
  int n = 1;
  std::optional<double> temperature, top_p, min_p;
  std::optional<double> frequency_penalty, presence_penalty, repetition_penalty;
  std::optional<int> top_k;
  std::optional<int64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> bad_words;
  std::map<int32_t, double> logit_bias;
  std::optional<std::vector<int32_t>> allowed_token_ids;
  bool ignore_eos = false;
  int min_tokens = 0;
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
  bool include_stop_str_in_output = false;
  std::optional<int> prompt_logprobs;
  std::optional<int> truncate_prompt_tokens;  // -1: keep at most max_model_len - max_tokens
  bool use_beam_search = false;  // beam search with `n` beams (BeamSearchParams)
  double length_penalty = 1.0;
  int priority = 0;
  std::optional<std::string> cache_salt;
  std::optional<std::string> request_id;
  bool stream = false;
  std::optional<StreamOptions> stream_options;
  bool echo = false;
  bool add_special_tokens = true;  // completions: true; chat: false
  bool return_token_ids = false;
  bool return_tokens_as_token_ids = false;
};

struct CompletionRequest : GenerationFields {
  std::vector<PromptInput> prompts;  // one entry per prompt of a batch
  int64_t max_tokens = 16;           // vLLM's default (null also means 16)
  std::optional<int> logprobs;       // top-k per position (completions format)
};

struct ChatCompletionRequest : GenerationFields {
  Json messages;                      // array of message objects, each with a string "role"
  std::optional<int64_t> max_tokens;  // max_completion_tokens, else max_tokens, else none
  bool logprobs = false;
  int top_logprobs = 0;
  Json tools;  // null or a non-empty array of tool objects
  std::optional<std::string> chat_template;
  Json chat_template_kwargs = Json::object();
  bool add_generation_prompt = true;
  bool continue_final_message = false;
};

struct TokenizeRequest {
  std::optional<std::string> model;
  std::optional<std::string> prompt;  // completions form
  Json messages;                      // chat form (null for the completions form)
  bool add_special_tokens = true;     // completions form default; chat form default false
  bool return_token_strs = false;
  bool add_generation_prompt = true;
  bool continue_final_message = false;
  std::optional<std::string> chat_template;
  Json chat_template_kwargs = Json::object();
  Json tools;
  bool is_chat() const { return !messages.is_null(); }
};

struct DetokenizeRequest {
  std::optional<std::string> model;
  std::vector<int32_t> tokens;
};

CompletionRequest parse_completion_request(const Json& body);
ChatCompletionRequest parse_chat_request(const Json& body);
TokenizeRequest parse_tokenize_request(const Json& body);
DetokenizeRequest parse_detokenize_request(const Json& body);

// The model's generation defaults the server falls back to for fields a request leaves unset.
struct SamplingDefaults {
  std::optional<double> temperature, top_p, min_p, repetition_penalty;
  std::optional<int> top_k;
  std::optional<int> max_tokens;  // generation_config max_new_tokens: also caps requests
};

// vLLM's to_beam_search_params: width n, the request's max_tokens (already resolved), ignore_eos,
// temperature (request, else model default, else 0), length_penalty, include_stop_str_in_output.
BeamSearchParams to_beam_search_params(const GenerationFields& request,
                                       const SamplingDefaults& defaults, int max_tokens);

// vLLM's to_sampling_params: request value, else the model default, else OpenAI's default.
// `logprobs` is the per-token top-k in the engine's terms; `max_tokens` is already resolved.
SamplingParams to_sampling_params(const GenerationFields& request, const SamplingDefaults& defaults,
                                  int max_tokens, std::optional<int> logprobs,
                                  std::optional<int> prompt_logprobs);

}  // namespace cvllm::server
