// Sampler: turns one step's logits into tokens with vLLM's semantics and order (vllm-behaviour.md
// §2.2): raw logprobs -> allowed_token_ids -> bad words -> min_tokens -> logit_bias -> penalties
// (repetition, frequency, presence) -> greedy argmax, or temperature -> min_p -> top-k -> top-p ->
// random draw. Works on host logits, one row per request; rows are independent.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/sched_output.h"
#include "cvllm/sampling_params.h"
#include "kernels/backend.h"

namespace cvllm {

class ThreadPool;

// What the sampler needs to know about one request besides its parameters.
struct SamplingState {
  const SamplingParams* params = nullptr;
  std::span<const int32_t> prompt_token_ids;
  std::span<const int32_t> output_token_ids;
  std::unordered_map<int32_t, int> output_token_counts;  // for frequency/presence penalties
  std::vector<std::vector<int32_t>> bad_words_token_ids;
  std::vector<int32_t> min_tokens_stop_ids;  // EOS + stop_token_ids, masked until min_tokens
  std::mt19937_64* generator = nullptr;      // the request's own (seeded by it or by the engine)
  // A uniform number already drawn from `generator` for this step (the device could not finish
  // the draw): the random draw uses it instead of drawing again.
  std::optional<double> preset_uniform;
  // The logits row already went through this step's processors (on the device): skip them.
  bool logits_processed = false;
};

struct SampleResult {
  int32_t token_id = 0;
  std::optional<TokenLogprobs> logprobs;  // when params->logprobs is set
};

class Sampler {
 public:
  explicit Sampler(int64_t vocab_size) : vocab_size_(vocab_size) {}

  // logits: [num_rows, vocab_size], modified in place. Rows are independent and may run on `pool`.
  std::vector<SampleResult> sample(float* logits, std::span<SamplingState* const> rows,
                                   ThreadPool* pool) const;

  // Top-k logprobs of `token_id` under raw logits (prompt logprobs use this).
  static TokenLogprobs gather_logprobs(const float* logits, int64_t vocab_size, int32_t token_id,
                                       int num_logprobs);

  // The pieces of sample(), exposed so tests can check each against vLLM's formulas.
  // Steps that edit logits: allowed_token_ids, bad words, min_tokens, logit_bias, penalties.
  static void apply_logits_processors(float* logits, int64_t vocab_size, const SamplingState& state);
  // The distribution a non-greedy request draws from (temperature, min_p, top-k, top-p), as
  // candidate ids with their renormalized probabilities: in descending probability when top-k or
  // top-p is active, else in vocabulary order.
  struct Candidates {
    std::vector<int32_t> ids;
    std::vector<double> probs;  // sums to 1
  };
  static Candidates sampling_candidates(float* logits, int64_t vocab_size, const SamplingParams& params);
  // Whether a backend may draw the row on the device (kernels/backend.h DeviceSampleRow):
  // processors, greedy, temperature -> min_p -> top-k -> top-p -> one uniform draw, all of them;
  // logprobs only up to max_logprobs per row, and only for rows whose draw the device always
  // finishes (greedy, or no top-k / top-p), since a row handed back to the host no longer has its
  // raw logits there.
  static bool device_can_draw(const SamplingState& state, int max_logprobs);
  // Whether the device finishes every draw with these parameters: greedy, or no top-k / top-p
  // (those may leave more candidates than it sorts).
  static bool device_always_draws(const SamplingParams& params);
  // Whether this request's next draw is the same whatever token the current one gives: no
  // penalties, no bad word longer than one token, min_tokens already reached. Async scheduling
  // prepares the next draw before the host knows the current token.
  static bool next_draw_ignores_last_token(const SamplingState& state);
  // The processors' inputs as the device takes them. banned: the bad words' last tokens whose
  // prefix the output ends with, and min_tokens' stop ids while it applies. seen: the sorted
  // unique prompt and output tokens (when a penalty applies), with their output counts.
  static std::vector<int32_t> banned_tokens(const SamplingState& state);
  static void seen_tokens(const SamplingState& state, std::vector<int32_t>& seen,
                          std::vector<int32_t>& output_counts);
  // A row for Backend::sample_on_device, drawing logits row `row` as `state` asks (u stays 0: the
  // caller takes it from the request's generator for non-greedy rows). Its spans point into
  // `lists`, which must outlive it.
  struct DeviceRowLists {
    std::vector<int32_t> allowed, banned, seen, seen_output_counts;
    std::vector<std::pair<int32_t, float>> bias;
  };
  static DeviceSampleRow device_row(const SamplingState& state, int32_t row, DeviceRowLists& lists);
  // The one uniform number in [0, 1) a random draw takes from the request's generator.
  static double uniform_draw(std::mt19937_64& generator);
  // The draw without top-k/top-p: `u` uniform in [0, 1) walks the cumulative distribution.
  static int32_t sample_full_vocabulary(float* logits, int64_t vocab_size,
                                        const SamplingParams& params, double u);

 private:
  SampleResult sample_row(float* logits, SamplingState& state) const;
  // The step's uniform number: the preset one if any (then cleared), else a fresh draw.
  static double take_uniform(SamplingState& state);
  int64_t vocab_size_;
};

}  // namespace cvllm
