// AsyncEngine: the engine loop on its own thread, for the server. Handler threads validate and
// tokenize a request on their own thread (LLMEngine::prepare_request), submit it, and read its
// outputs from a RequestStream; the loop thread owns the LLMEngine and is the only one that steps
// it. A handler whose client went away calls abort(): the request stops at the next step and its
// KV blocks are freed.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cvllm/engine_args.h"
#include "cvllm/outputs.h"
#include "engine/llm_engine.h"

namespace cvllm {

// One request's outputs as the engine produces them. Safe to read from one consumer thread.
class RequestStream {
 public:
  enum class Status { kOutput, kTimeout, kFinished };
  // Waits up to `timeout` for the next output. kFinished once the last output has been taken (or
  // the engine failed: error() then says why).
  Status next(RequestOutput& out, std::chrono::milliseconds timeout);
  std::optional<std::string> error() const;
  const std::string& request_id() const { return request_id_; }

 private:
  friend class AsyncEngine;
  explicit RequestStream(std::string request_id) : request_id_(std::move(request_id)) {}
  void push(RequestOutput out);
  void close(std::optional<std::string> error = std::nullopt);

  std::string request_id_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<RequestOutput> queue_;
  bool closed_ = false;
  std::optional<std::string> error_;
};

// A thread-safe snapshot of the engine for /metrics, /health and the periodic log line.
struct EngineSnapshot {
  SchedulerStats scheduler;
  int64_t num_steps = 0;
  int64_t prompt_tokens_total = 0;      // of requests that finished
  int64_t generation_tokens_total = 0;  // of requests that finished
  int64_t num_requests_finished = 0;
  bool healthy = true;
};

class AsyncEngine {
 public:
  explicit AsyncEngine(const EngineArgs& args);
  ~AsyncEngine();  // aborts what is left and stops the loop
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Validates and tokenizes on the caller's thread (ValueError for bad input, nothing is queued),
  // then queues the request. Output kind comes from params (the server uses DELTA or FINAL_ONLY).
  std::shared_ptr<RequestStream> generate(const std::string& request_id, const Prompt& prompt,
                                          const SamplingParams& params, int priority = 0);
  // Beam search for one prompt (vLLM's online `use_beam_search`): validated on the caller's thread
  // like generate(); the stream yields one final RequestOutput with the beams as completions
  // (beam_search_request_output).
  std::shared_ptr<RequestStream> beam_search(const std::string& request_id, const Prompt& prompt,
                                             const BeamSearchParams& params, int priority = 0);
  // Stops a request (client disconnected, or done reading); unknown ids are ignored.
  void abort(const std::string& request_id);
  // Stops accepting requests; drains in-flight ones (drain=true) or aborts them, then stops.
  void shutdown(bool drain);

  bool healthy() const { return healthy_.load(); }
  EngineSnapshot snapshot() const;
  // Immutable after construction: tokenizer, model config, args. Safe from any thread.
  const LLMEngine& engine() const { return *engine_; }
  int num_pending() const;

 private:
  struct PendingBeamSearch {
    std::string request_id;
    Prompt prompt;  // token ids, tokenized on the caller's thread
    BeamSearchParams params;
    int priority = 0;
  };

  void loop();
  void add_pending(std::deque<PreparedRequest>& adds, std::deque<PendingBeamSearch>& beam_adds);
  void deliver(std::vector<RequestOutput>& outputs);
  std::shared_ptr<RequestStream> register_stream(const std::string& request_id);
  void fail_all(const std::string& error);

  std::unique_ptr<LLMEngine> engine_;
  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::deque<PreparedRequest> pending_adds_;
  std::deque<PendingBeamSearch> pending_beam_adds_;
  std::unordered_map<std::string, bool> beam_include_stop_;  // live beam searches (loop thread)
  std::vector<std::string> pending_aborts_;
  std::unordered_map<std::string, std::shared_ptr<RequestStream>> streams_;
  bool stop_ = false;
  bool accepting_ = true;
  bool drain_ = false;
  std::atomic<bool> healthy_{true};
  EngineSnapshot snapshot_;
  std::thread thread_;
};

}  // namespace cvllm
