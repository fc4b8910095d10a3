// SamplingParams: how to sample the continuation of one prompt. Field names, defaults and
// validation follow vLLM's `vllm.SamplingParams` (see shared/reference/vllm-behaviour.md §2.1).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace cvllm {

// Streaming granularity of RequestOutput: the whole text so far, only what is new, or only the end.
enum class RequestOutputKind { kCumulative = 0, kDelta = 1, kFinalOnly = 2 };

struct SamplingParams {
  int n = 1;                       // completions per prompt
  double presence_penalty = 0.0;   // [-2, 2], output tokens only
  double frequency_penalty = 0.0;  // [-2, 2], output tokens only
  double repetition_penalty = 1.0; // > 0, prompt and output tokens
  double temperature = 1.0;        // >= 0; < 1e-5 means greedy
  double top_p = 1.0;              // (0, 1]
  int top_k = 0;                   // 0 or -1: off
  double min_p = 0.0;              // [0, 1]
  std::optional<int64_t> seed;     // per-request RNG seed; -1 means none
  std::vector<std::string> stop;   // stop strings (text is cut before them)
  std::vector<int32_t> stop_token_ids;
  std::vector<std::string> bad_words;
  bool include_stop_str_in_output = false;
  bool ignore_eos = false;
  std::optional<int> max_tokens = 16;  // nullopt: until max_model_len
  int min_tokens = 0;
  std::optional<int> logprobs;         // top-k logprobs per generated token; -1 = whole vocab
  std::optional<int> prompt_logprobs;  // the same for prompt tokens
  bool detokenize = true;
  bool skip_special_tokens = true;
  bool spaces_between_special_tokens = true;
  std::map<int32_t, double> logit_bias;  // clamped to [-100, 100]
  std::optional<std::vector<int32_t>> allowed_token_ids;
  RequestOutputKind output_kind = RequestOutputKind::kCumulative;
  std::optional<int> truncate_prompt_tokens;  // keep only the last k prompt tokens; -1: max_model_len

  // Filled in by the engine when a request is added (user values are replaced): bad_words as
  // token-id sequences (each word with and without a leading space), and EOS plus stop_token_ids
  // (what min_tokens masks).
  std::vector<std::vector<int32_t>> bad_words_token_ids;
  std::vector<int32_t> all_stop_token_ids;

  // Throws cvllm::ValueError with vLLM's message for invalid values (checks that need the model,
  // such as vocabulary bounds, happen when a request is added).
  void validate() const;
  // temperature < 1e-5: vLLM resets top_p/top_k/min_p and samples greedily.
  bool is_greedy() const { return temperature < 1e-5; }
};

}  // namespace cvllm
