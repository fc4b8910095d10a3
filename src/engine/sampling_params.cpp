// SamplingParams::validate: vLLM's _verify_args checks and messages, so clients see the same
// errors (the server maps them to HTTP 400).
#include <cmath>

#include "cvllm/sampling_params.h"
#include "util/error.h"

namespace cvllm {
namespace {

[[noreturn]] void invalid(const std::string& message) { throw ValueError(message); }

}  // namespace

void SamplingParams::validate() const {
  if (n < 1) invalid(cat("n must be at least 1, got ", n, "."));
  if (n > 16384) invalid(cat("n must be at most 16384, got ", n, "."));
  if (!std::isfinite(presence_penalty) || presence_penalty < -2.0 || presence_penalty > 2.0) {
    invalid(cat("presence_penalty must be in [-2, 2], got ", presence_penalty, "."));
  }
  if (!std::isfinite(frequency_penalty) || frequency_penalty < -2.0 || frequency_penalty > 2.0) {
    invalid(cat("frequency_penalty must be in [-2, 2], got ", frequency_penalty, "."));
  }
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0) {
    invalid(cat("repetition_penalty must be greater than zero, got ", repetition_penalty, "."));
  }
  if (std::isnan(temperature) || temperature < 0.0) {
    invalid(cat("temperature must be non-negative, got ", temperature, "."));
  }
  if (!(top_p > 0.0 && top_p <= 1.0)) invalid(cat("top_p must be in (0, 1], got ", top_p, "."));
  if (top_k < -1) invalid(cat("top_k must be 0 (disable), or at least 1, got ", top_k, "."));
  if (!(min_p >= 0.0 && min_p <= 1.0)) invalid(cat("min_p must be in [0, 1], got ", min_p, "."));
  if (max_tokens && *max_tokens < 1) {
    invalid(cat("max_tokens must be at least 1, got ", *max_tokens, "."));
  }
  if (min_tokens < 0) {
    invalid(cat("min_tokens must be greater than or equal to 0, got ", min_tokens, "."));
  }
  if (max_tokens && min_tokens > *max_tokens) {
    invalid(cat("min_tokens must be less than or equal to max_tokens=", *max_tokens, ", got ",
                min_tokens, "."));
  }
  if (logprobs && *logprobs < 0 && *logprobs != -1) {
    invalid(cat("logprobs must be non-negative or -1, got ", *logprobs, "."));
  }
  if (prompt_logprobs && *prompt_logprobs < 0 && *prompt_logprobs != -1) {
    invalid(cat("prompt_logprobs must be non-negative or -1, got ", *prompt_logprobs, "."));
  }
  if (truncate_prompt_tokens && *truncate_prompt_tokens < 1 && *truncate_prompt_tokens != -1) {
    invalid(cat("truncate_prompt_tokens must be >= 1 or -1, got ", *truncate_prompt_tokens, "."));
  }
  for (const std::string& s : stop) {
    if (s.empty()) invalid("stop cannot contain an empty string.");
  }
  if (!stop.empty() && !detokenize) {
    invalid("stop strings are only supported when detokenize is True. Set detokenize=True to use stop.");
  }
  for (const std::string& w : bad_words) {
    if (w.empty()) invalid("bad_words cannot contain an empty string.");
  }
  if (allowed_token_ids && allowed_token_ids->empty()) {
    invalid("allowed_token_ids is not None and empty!");
  }
  if (is_greedy() && n > 1) invalid(cat("n must be 1 when using greedy sampling, got ", n, "."));
}

}  // namespace cvllm
