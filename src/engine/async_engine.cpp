#include "engine/async_engine.h"

#include "engine/engine_core.h"
#include "util/error.h"
#include "util/logging.h"

namespace cvllm {

RequestStream::Status RequestStream::next(RequestOutput& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!ready_.wait_for(lock, timeout, [&] { return !queue_.empty() || closed_; })) {
    return Status::kTimeout;
  }
  if (!queue_.empty()) {
    out = std::move(queue_.front());
    queue_.pop_front();
    return Status::kOutput;
  }
  return Status::kFinished;
}

std::optional<std::string> RequestStream::error() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return error_;
}

void RequestStream::push(RequestOutput out) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(out));
  }
  ready_.notify_all();
}

void RequestStream::close(std::optional<std::string> error) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    if (error && !error_) error_ = std::move(error);
  }
  ready_.notify_all();
}

AsyncEngine::AsyncEngine(const EngineArgs& args) : engine_(std::make_unique<LLMEngine>(args)) {
  thread_ = std::thread([this] { loop(); });
}

AsyncEngine::~AsyncEngine() { shutdown(/*drain=*/false); }

// Call with mutex_ held.
std::shared_ptr<RequestStream> AsyncEngine::register_stream(const std::string& request_id) {
  if (!accepting_) throw Error("the engine is shutting down");
  if (!healthy_.load()) throw Error("the engine is not healthy");
  if (streams_.count(request_id)) throw ValueError(cat("request id '", request_id, "' is already in use"));
  auto stream = std::shared_ptr<RequestStream>(new RequestStream(request_id));
  streams_[request_id] = stream;
  return stream;
}

std::shared_ptr<RequestStream> AsyncEngine::generate(const std::string& request_id,
                                                     const Prompt& prompt,
                                                     const SamplingParams& params, int priority) {
  PreparedRequest prepared = engine_->prepare_request(request_id, prompt, params, priority);
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stream = register_stream(request_id);
    pending_adds_.push_back(std::move(prepared));
  }
  work_.notify_one();
  return stream;
}

std::shared_ptr<RequestStream> AsyncEngine::beam_search(const std::string& request_id,
                                                        const Prompt& prompt,
                                                        const BeamSearchParams& params,
                                                        int priority) {
  params.validate();
  // The prompt checks of a beam's request (length, vocabulary), done here so a bad prompt is the
  // caller's ValueError and never reaches the loop thread.
  SamplingParams beam;
  beam.temperature = params.temperature;
  beam.max_tokens = params.max_tokens;
  beam.detokenize = false;
  PreparedRequest prepared = engine_->prepare_request(request_id, prompt, beam, priority);
  Prompt tokens(prepared.prompt_token_ids);
  tokens.cache_salt = prompt.cache_salt;
  std::shared_ptr<RequestStream> stream;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stream = register_stream(request_id);
    pending_beam_adds_.push_back({request_id, std::move(tokens), params, priority});
  }
  work_.notify_one();
  return stream;
}

void AsyncEngine::abort(const std::string& request_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!streams_.count(request_id)) return;
    pending_aborts_.push_back(request_id);
  }
  work_.notify_one();
}

int AsyncEngine::num_pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int>(streams_.size());
}

EngineSnapshot AsyncEngine::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  EngineSnapshot s = snapshot_;
  s.healthy = healthy_.load();
  return s;
}

void AsyncEngine::shutdown(bool drain) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    accepting_ = false;
    drain_ = drain;
    stop_ = true;
  }
  work_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void AsyncEngine::fail_all(const std::string& error) {
  healthy_.store(false);
  std::unordered_map<std::string, std::shared_ptr<RequestStream>> streams;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    streams.swap(streams_);
    pending_adds_.clear();
    pending_beam_adds_.clear();
  }
  for (auto& [id, stream] : streams) stream->close(error);
}

// Loop thread: queues what handlers submitted into the engine. A beam search that the engine
// still refuses (it re-checks) fails alone, with its error on its stream.
void AsyncEngine::add_pending(std::deque<PreparedRequest>& adds,
                              std::deque<PendingBeamSearch>& beam_adds) {
  for (PreparedRequest& req : adds) engine_->add_prepared(std::move(req));
  for (PendingBeamSearch& b : beam_adds) {
    try {
      engine_->add_beam_search_request(b.request_id, b.prompt, b.params, b.priority);
      beam_include_stop_[b.request_id] = b.params.include_stop_str_in_output;
    } catch (const ValueError& e) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (auto it = streams_.find(b.request_id); it != streams_.end()) {
        it->second->close(e.what());
        streams_.erase(it);
      }
    }
  }
}

// Loop thread: hands a step's outputs (and finished beam searches) to their streams.
void AsyncEngine::deliver(std::vector<RequestOutput>& outputs) {
  for (BeamSearchResult& r : engine_->take_finished_beam_searches()) {
    auto include_stop = beam_include_stop_.find(r.request_id);
    bool include = include_stop != beam_include_stop_.end() && include_stop->second;
    if (include_stop != beam_include_stop_.end()) beam_include_stop_.erase(include_stop);
    outputs.push_back(beam_search_request_output(std::move(r), engine_->tokenizer(), include));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  // The snapshot first: a client woken by its final output may read /metrics at once, and must not
  // see its request still running.
  snapshot_.scheduler = engine_->scheduler_stats();
  snapshot_.num_steps = engine_->engine_core().num_steps();
  for (RequestOutput& out : outputs) {
    auto it = streams_.find(out.request_id);
    if (it == streams_.end()) continue;
    bool finished = out.finished;
    if (finished) {
      snapshot_.prompt_tokens_total += static_cast<int64_t>(out.prompt_token_ids.size());
      // DELTA outputs carry only the last tokens: count from the request's metrics.
      if (out.metrics) {
        snapshot_.generation_tokens_total += out.metrics->num_generation_tokens;
      } else {
        for (const CompletionOutput& c : out.outputs) {
          snapshot_.generation_tokens_total += static_cast<int64_t>(c.token_ids.size());
        }
      }
      ++snapshot_.num_requests_finished;
    }
    it->second->push(std::move(out));
    if (finished) {
      it->second->close();
      streams_.erase(it);
    }
  }
}

void AsyncEngine::loop() {
  while (true) {
    std::deque<PreparedRequest> adds;
    std::deque<PendingBeamSearch> beam_adds;
    std::vector<std::string> aborts;
    bool stop = false, drain = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_.wait(lock, [&] {
        return stop_ || !pending_adds_.empty() || !pending_beam_adds_.empty() ||
               !pending_aborts_.empty() || engine_->has_unfinished_requests();
      });
      adds.swap(pending_adds_);
      beam_adds.swap(pending_beam_adds_);
      aborts.swap(pending_aborts_);
      stop = stop_;
      drain = drain_;
    }
    try {
      add_pending(adds, beam_adds);
      if (stop && !drain) {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto& [id, stream] : streams_) aborts.push_back(id);
      }
      if (!aborts.empty()) {
        engine_->abort_request(aborts);
        std::lock_guard<std::mutex> lock(mutex_);
        for (const std::string& id : aborts) {
          beam_include_stop_.erase(id);
          auto it = streams_.find(id);
          if (it == streams_.end()) continue;
          it->second->close();
          streams_.erase(it);
        }
      }
      if (engine_->has_unfinished_requests()) {
        std::vector<RequestOutput> outputs = engine_->step();
        deliver(outputs);  // updates the snapshot too
      } else {
        std::lock_guard<std::mutex> lock(mutex_);  // aborts alone change what is running
        snapshot_.scheduler = engine_->scheduler_stats();
        snapshot_.num_steps = engine_->engine_core().num_steps();
      }
    } catch (const std::exception& e) {
      // An internal fault: nothing in flight can be trusted any more.
      LOG_ERROR("engine loop failed: ", e.what());
      fail_all(cat("engine failure: ", e.what()));
      return;
    }
    if (stop && !engine_->has_unfinished_requests()) {
      std::lock_guard<std::mutex> lock(mutex_);
      bool nothing_pending = pending_adds_.empty() && pending_beam_adds_.empty();
      if (nothing_pending) {
        for (auto& [id, stream] : streams_) stream->close("the engine shut down");
        streams_.clear();
        return;
      }
    }
  }
}

}  // namespace cvllm
