// Results of generation, with vLLM's field names (`vllm.outputs.RequestOutput`, `CompletionOutput`,
// `vllm.logprobs.Logprob`).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace cvllm {

struct Logprob {
  float logprob = 0.0f;
  std::optional<int> rank;  // 1-based rank in the vocabulary
  std::optional<std::string> decoded_token;
};

// One position's logprobs: the sampled (or prompt) token first, then the top-k by rank. Ordered
// as inserted, like the Python dict vLLM returns.
using PositionLogprobs = std::vector<std::pair<int32_t, Logprob>>;

struct CompletionOutput {
  int index = 0;
  std::string text;
  std::vector<int32_t> token_ids;
  std::optional<double> cumulative_logprob;  // set only when logprobs were requested
  std::optional<std::vector<PositionLogprobs>> logprobs;
  std::optional<std::string> finish_reason;  // "stop", "length", "abort", "error"
  // The stop string or stop token id that ended the sequence; empty for EOS or length.
  std::variant<std::monostate, std::string, int32_t> stop_reason;

  bool finished() const { return finish_reason.has_value(); }
};

// Timing of one request (vLLM's RequestStateStats). arrival_time is wall-clock seconds since the
// epoch; the *_ts values are monotonic seconds, comparable with each other only.
struct RequestMetrics {
  double arrival_time = 0.0;
  double queued_ts = 0.0;
  double first_token_ts = 0.0;  // 0 until the first token
  double last_token_ts = 0.0;
  double first_token_latency = 0.0;  // first_token_ts - queued_ts
  int num_generation_tokens = 0;
};

struct RequestOutput {
  std::string request_id;
  std::optional<std::string> prompt;
  std::vector<int32_t> prompt_token_ids;
  // First element is nullopt (no distribution for the first prompt token).
  std::optional<std::vector<std::optional<PositionLogprobs>>> prompt_logprobs;
  std::vector<CompletionOutput> outputs;
  bool finished = false;
  int num_cached_tokens = 0;  // prompt tokens served from the prefix cache
  std::optional<RequestMetrics> metrics;
};

}  // namespace cvllm
