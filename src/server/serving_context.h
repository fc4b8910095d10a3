// ServingContext: what every endpoint handler shares — the engine, the server configuration, the
// metrics — and the rules vLLM applies to every generation request before it reaches the engine:
// model-name check, request ids, tokenization, prompt truncation and the context-length check,
// and the resolution of max_tokens (vLLM's get_max_tokens).
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/async_engine.h"
#include "server/protocol.h"
#include "server/server_config.h"

namespace cvllm {
class Tokenizer;
}

namespace cvllm::server {

class ServerMetrics;

// 32 lowercase hex digits, like Python's uuid.uuid4().hex (vLLM's random_uuid).
std::string random_uuid();

class ServingContext {
 public:
  ServingContext(AsyncEngine& engine, const ServerConfig& config, ServerMetrics& metrics);

  AsyncEngine& engine() const { return engine_; }
  // Submits one prompt: beam search when the request asks for it (`use_beam_search`, `n` beams),
  // else sampling with `params`.
  std::shared_ptr<RequestStream> submit(const std::string& engine_id, const Prompt& prompt,
                                        const SamplingParams& params,
                                        const GenerationFields& request);
  const ServerConfig& config() const { return config_; }
  ServerMetrics& metrics() const { return metrics_; }
  int max_model_len() const;
  // The tokenizer; ApiError(400) when the engine runs without one (skip_tokenizer_init).
  const Tokenizer& tokenizer() const;
  const Tokenizer* tokenizer_or_null() const;

  // The name responses report: the first --served-model-name (else the model path).
  const std::string& model_name() const { return config_.served_model_names.front(); }
  // 404 NotFoundError unless `model` is absent or one of the served names.
  void check_model(const std::optional<std::string>& model) const;
  // 400 when priority != 0 and the engine does not schedule by priority (vLLM's rule).
  void check_priority(int priority) const;
  SamplingDefaults sampling_defaults() const;

  // "<prefix>-" + (the X-Request-Id header, else the body's request_id, else a random uuid).
  std::string make_response_id(const char* prefix, const std::string& header_id,
                               const std::optional<std::string>& body_id) const;
  // The id the engine sees: unique even when clients reuse request ids.
  std::string make_engine_id(const std::string& response_id, size_t index);

  std::vector<int32_t> tokenize(const std::string& text, bool add_special_tokens) const;
  // vLLM's TokenizeParams checks: truncate_prompt_tokens (keep the last k; -1 keeps as many as
  // fit), then prompt_len + max_output_tokens <= max_model_len. `max_output_tokens` is what the
  // request asked for (0 when it left it open).
  void fit_prompt(std::vector<int32_t>& ids, std::optional<int> truncate_prompt_tokens,
                  int64_t max_output_tokens, const char* max_tokens_param) const;
  // -1 (the whole vocabulary) counts as vocab_size against --max-logprobs, as in vLLM.
  void check_logprobs_limit(const SamplingParams& params) const;
  // vLLM's get_max_tokens: the request's value (else all the room left), capped by the room
  // left and by the model's generation-config max_new_tokens.
  int resolve_max_tokens(std::optional<int64_t> requested, int prompt_len) const;

  // Graceful shutdown: new generation requests get 503 once this is false.
  bool accepting() const { return accepting_.load(); }
  void stop_accepting() { accepting_.store(false); }
  std::atomic<int>& in_flight() { return in_flight_; }

 private:
  AsyncEngine& engine_;
  ServerConfig config_;
  ServerMetrics& metrics_;
  std::atomic<bool> accepting_{true};
  std::atomic<int> in_flight_{0};
  std::atomic<uint64_t> next_engine_id_{0};
};

// Counts a generation request as in flight while alive (shared by its streaming callback).
class InFlightGuard {
 public:
  explicit InFlightGuard(std::atomic<int>& counter) : counter_(counter) { counter_.fetch_add(1); }
  ~InFlightGuard() { counter_.fetch_sub(1); }
  InFlightGuard(const InFlightGuard&) = delete;
  InFlightGuard& operator=(const InFlightGuard&) = delete;

 private:
  std::atomic<int>& counter_;
};

}  // namespace cvllm::server
