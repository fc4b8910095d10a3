// Reading engine outputs for one HTTP request and streaming them out as server-sent events.
// - OutputStreams: the RequestStreams of one request (one per prompt), read as one merged
//   sequence; whatever is unfinished when it is destroyed is aborted in the engine.
// - ConnectionProbe: tells whether the client closed its connection while nothing is being
//   written (queued requests, non-streaming requests), so the engine can stop early.
// - SSE framing (`data: <json>\n\n`, `data: [DONE]\n\n`) and the glue that runs an SSE producer
//   as httplib's chunked content provider, aborting the request when a write fails.
// - SseStreamer: the producer skeleton every streaming endpoint shares; endpoints format events.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/async_engine.h"
#include "server/json_util.h"
#include "server/metrics.h"
#include "server/serving_context.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace cvllm::server {

inline constexpr std::string_view kSseDone = "data: [DONE]\n\n";
std::string sse_event(const OrderedJson& chunk);

class ConnectionProbe {
 public:
  // Identifies the server-side socket by its peer address and local port.
  ConnectionProbe(std::string remote_addr, int remote_port, int local_port);
  static std::shared_ptr<ConnectionProbe> for_request(const httplib::Request& req);
  // True once the peer has closed or reset the connection. Cheap after the first call.
  bool peer_closed();

 private:
  int find_socket() const;

  std::string remote_addr_;
  int remote_port_;
  int local_port_;
  int fd_ = -1;
  bool searched_ = false;
};

class OutputStreams {
 public:
  explicit OutputStreams(AsyncEngine& engine) : engine_(engine) {}
  ~OutputStreams() { abort_unfinished(); }
  OutputStreams(const OutputStreams&) = delete;
  OutputStreams& operator=(const OutputStreams&) = delete;

  void add(std::string engine_id, std::shared_ptr<RequestStream> stream);
  size_t size() const { return entries_.size(); }

  enum class Status { kOutput, kTimeout, kDone };
  // The next output of any stream (`index` = which one), waiting up to `timeout`. kDone once
  // every stream has finished.
  Status next(size_t& index, RequestOutput& out, std::chrono::milliseconds timeout);
  // A stream that closed without its final output: the engine failed (error set) or aborted it.
  bool closed_early(size_t index) const {
    return entries_[index].closed && !entries_[index].got_final;
  }
  std::optional<std::string> error() const;
  // Aborts every stream still running; returns how many there were.
  int abort_unfinished();

 private:
  struct Entry {
    std::string engine_id;
    std::shared_ptr<RequestStream> stream;
    bool closed = false;
    bool got_final = false;
  };
  AsyncEngine& engine_;
  std::vector<Entry> entries_;
  size_t cursor_ = 0;
};

// One step of an SSE response: append events to `out`; set `done` after the last one. Returns
// false to drop the connection (the client went away: the producer has aborted its requests).
using SseStep = std::function<bool(std::string& out, bool& done)>;
// Sends `step`'s events as a chunked text/event-stream body; a failed write calls `on_disconnect`.
void set_sse_response(httplib::Response& res, SseStep step, std::function<void()> on_disconnect);

// vLLM's *_stream_generator skeleton: waits for engine output while watching the client (a closed
// connection aborts the request), records metrics for every output, turns an exception while
// formatting into an error event (and stops formatting), and ends with an error event (engine
// failure: 500, aborted by a shutdown: 503) or the usage chunk, then [DONE].
class SseStreamer {
 public:
  // n: choices per prompt (for the abort counts).
  SseStreamer(ServingContext& ctx, std::unique_ptr<OutputStreams> streams,
              std::shared_ptr<ConnectionProbe> probe, int n, double arrival_ts);
  virtual ~SseStreamer() = default;
  SseStreamer(const SseStreamer&) = delete;
  SseStreamer& operator=(const SseStreamer&) = delete;

  // Runs `streamer` as the body of `res`.
  static void attach(std::shared_ptr<SseStreamer> streamer, httplib::Response& res);
  // One SseStep (see set_sse_response).
  bool step(std::string& out, bool& done);
  // The client went away: abort whatever is still running.
  void on_disconnect();

 protected:
  // Events for one engine output of stream `index` (the request's prompt `index`). May throw.
  virtual void emit_output(std::string& out, size_t index, const RequestOutput& res) = 0;
  // The last chunk when nothing failed (the usage chunk, if the request asked for one).
  virtual void emit_usage(std::string& out) = 0;

  ServingContext& ctx_;
  // Cached prompt tokens of the first output (--enable-prompt-tokens-details).
  std::optional<int64_t> cached_tokens_;

 private:
  void finish(std::string& out);

  InFlightGuard guard_;
  std::unique_ptr<OutputStreams> streams_;
  std::shared_ptr<ConnectionProbe> probe_;
  int n_;
  double arrival_ts_;
  std::vector<RequestTiming> timings_;  // one per stream
  bool failed_ = false;
};

// Waits for the final output of every stream of a FINAL_ONLY request, recording metrics. Returns
// false when the client disconnected first (its requests are aborted). Throws ApiError(500) when
// the engine failed and ApiError(503) when the request was aborted by a shutdown.
// `n`: choices per prompt (for the abort count).
bool wait_for_final_outputs(OutputStreams& streams, ConnectionProbe& probe, ServingContext& ctx,
                            int n, double arrival_ts, std::vector<RequestOutput>& finals);

// How long a handler waits for engine output before checking whether its client is still there.
inline constexpr std::chrono::milliseconds kDisconnectPollInterval{250};

}  // namespace cvllm::server
