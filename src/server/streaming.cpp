#include "server/streaming.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <unordered_map>

#include "server/api_error.h"
#include "server/metrics.h"
#include "server/serving_context.h"

namespace cvllm::server {

std::string sse_event(const OrderedJson& chunk) {
  std::string out = "data: ";
  out += dump_json(chunk);
  out += "\n\n";
  return out;
}

ConnectionProbe::ConnectionProbe(std::string remote_addr, int remote_port, int local_port)
    : remote_addr_(std::move(remote_addr)), remote_port_(remote_port), local_port_(local_port) {}

std::shared_ptr<ConnectionProbe> ConnectionProbe::for_request(const httplib::Request& req) {
  return std::make_shared<ConnectionProbe>(req.remote_addr, req.remote_port, req.local_port);
}

namespace {

// The address and port of a sockaddr as text (IPv4, IPv6 or IPv4-mapped IPv6).
bool endpoint_of(const sockaddr_storage& sa, std::string& addr, int& port) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&sa);
    if (!inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf))) return false;
    port = ntohs(in->sin_port);
  } else if (sa.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&sa);
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf))) return false;
    port = ntohs(in6->sin6_port);
  } else {
    return false;
  }
  addr = buf;
  return true;
}

}  // namespace

// The connected TCP sockets of this process by "peer address|peer port|local port". httplib does
// not hand the socket to handlers, but the accepted socket is the one whose peer is the client's
// address and port and whose local port is ours; /proc/self/fd lists our descriptors. One scan
// indexes them all, so a burst of waiting requests costs one scan, not one each; a cached entry is
// re-checked before use because descriptors are reused.
class SocketIndex {
 public:
  int find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = key_to_fd_.find(key);
    if (it != key_to_fd_.end() && key_of(it->second) == key) return it->second;
    rescan();
    it = key_to_fd_.find(key);
    return it == key_to_fd_.end() ? -1 : it->second;
  }

  static std::string key_of(int fd) {
    sockaddr_storage peer{}, local{};
    socklen_t len = sizeof(peer);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &len) != 0) return "";
    len = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) return "";
    std::string addr, local_addr;
    int port = -1, local_port = -1;
    if (!endpoint_of(peer, addr, port) || !endpoint_of(local, local_addr, local_port)) return "";
    return make_key(addr, port, local_port);
  }

  static std::string make_key(const std::string& addr, int port, int local_port) {
    return addr + "|" + std::to_string(port) + "|" + std::to_string(local_port);
  }

 private:
  void rescan() {
    key_to_fd_.clear();
    DIR* dir = opendir("/proc/self/fd");
    if (!dir) return;
    while (dirent* e = readdir(dir)) {
      char* end = nullptr;
      long fd = std::strtol(e->d_name, &end, 10);
      if (end == e->d_name || *end != '\0' || fd < 0) continue;
      std::string key = key_of(static_cast<int>(fd));
      if (!key.empty()) key_to_fd_[key] = static_cast<int>(fd);
    }
    closedir(dir);
  }

  std::mutex mutex_;
  std::unordered_map<std::string, int> key_to_fd_;
};

int ConnectionProbe::find_socket() const {
  static SocketIndex index;
  return index.find(SocketIndex::make_key(remote_addr_, remote_port_, local_port_));
}

bool ConnectionProbe::peer_closed() {
  if (!searched_) {
    fd_ = find_socket();
    searched_ = true;
  }
  if (fd_ < 0) return false;
  char byte;
  ssize_t n = recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return true;  // orderly shutdown by the peer
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
  return false;
}

void OutputStreams::add(std::string engine_id, std::shared_ptr<RequestStream> stream) {
  entries_.push_back(Entry{std::move(engine_id), std::move(stream)});
}

OutputStreams::Status OutputStreams::next(size_t& index, RequestOutput& out,
                                          std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    size_t num_open = 0, last_open = 0;
    for (size_t k = 0; k < entries_.size(); ++k) {
      size_t i = (cursor_ + k) % entries_.size();
      Entry& e = entries_[i];
      if (e.closed) continue;
      ++num_open;
      last_open = i;
      RequestStream::Status s = e.stream->next(out, std::chrono::milliseconds(0));
      if (s == RequestStream::Status::kOutput) {
        if (out.finished) e.got_final = true;
        index = i;
        cursor_ = (i + 1) % entries_.size();  // round robin: no prompt starves the others
        return Status::kOutput;
      }
      if (s == RequestStream::Status::kFinished) e.closed = true, --num_open;
    }
    if (num_open == 0) return Status::kDone;
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Status::kTimeout;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    // One open stream: block on it. Several: poll them in short slices.
    auto slice = num_open == 1 ? left : std::min(left, std::chrono::milliseconds(2));
    Entry& e = entries_[last_open];
    if (e.closed) continue;
    RequestStream::Status s = e.stream->next(out, std::max(slice, std::chrono::milliseconds(1)));
    if (s == RequestStream::Status::kOutput) {
      if (out.finished) e.got_final = true;
      index = last_open;
      return Status::kOutput;
    }
    if (s == RequestStream::Status::kFinished) e.closed = true;
  }
}

std::optional<std::string> OutputStreams::error() const {
  for (const Entry& e : entries_) {
    if (auto err = e.stream->error()) return err;
  }
  return std::nullopt;
}

int OutputStreams::abort_unfinished() {
  int num_aborted = 0;
  for (Entry& e : entries_) {
    if (!e.closed && !e.got_final) {
      engine_.abort(e.engine_id);
      ++num_aborted;
    }
    e.closed = true;
  }
  return num_aborted;
}

void set_sse_response(httplib::Response& res, SseStep step, std::function<void()> on_disconnect) {
  auto state = std::make_shared<std::pair<SseStep, std::function<void()>>>(
      std::move(step), std::move(on_disconnect));
  res.set_chunked_content_provider(
      "text/event-stream; charset=utf-8",
      [state](size_t /*offset*/, httplib::DataSink& sink) {
        std::string out;
        bool done = false;
        bool keep = state->first(out, done);
        if (!out.empty() && !sink.write(out.data(), out.size())) {
          state->second();
          return false;
        }
        if (!keep) return false;
        if (done) sink.done();
        return true;
      },
      [state](bool success) {
        if (!success) state->second();
      });
}

bool wait_for_final_outputs(OutputStreams& streams, ConnectionProbe& probe, ServingContext& ctx,
                            int n, double arrival_ts, std::vector<RequestOutput>& finals) {
  finals.assign(streams.size(), RequestOutput{});
  std::vector<RequestTiming> timings(streams.size());
  std::vector<bool> have(streams.size(), false);
  while (true) {
    size_t index = 0;
    RequestOutput out;
    OutputStreams::Status status = streams.next(index, out, kDisconnectPollInterval);
    if (status == OutputStreams::Status::kDone) break;
    if (status == OutputStreams::Status::kTimeout) {
      if (probe.peer_closed()) {
        ctx.metrics().record_abort(streams.abort_unfinished() * n);
        return false;
      }
      continue;
    }
    ctx.metrics().record_output(timings[index], out, arrival_ts);
    if (out.finished) {
      finals[index] = std::move(out);
      have[index] = true;
    }
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    if (have[i]) continue;
    if (std::optional<std::string> err = streams.error()) throw ApiError(500, *err);
    if (!ctx.accepting()) {
      ctx.metrics().record_abort(n);
      throw ApiError(503, "The server is shutting down; the request was aborted.");
    }
    throw ApiError(500, "No output received from the engine.");
  }
  return true;
}

SseStreamer::SseStreamer(ServingContext& ctx, std::unique_ptr<OutputStreams> streams,
                         std::shared_ptr<ConnectionProbe> probe, int n, double arrival_ts)
    : ctx_(ctx),
      guard_(ctx.in_flight()),
      streams_(std::move(streams)),
      probe_(std::move(probe)),
      n_(n),
      arrival_ts_(arrival_ts),
      timings_(streams_->size()) {}

void SseStreamer::attach(std::shared_ptr<SseStreamer> streamer, httplib::Response& res) {
  set_sse_response(
      res, [streamer](std::string& out, bool& done) { return streamer->step(out, done); },
      [streamer] { streamer->on_disconnect(); });
}

bool SseStreamer::step(std::string& out, bool& done) {
  size_t index = 0;
  RequestOutput res;
  OutputStreams::Status status = streams_->next(index, res, kDisconnectPollInterval);
  if (status == OutputStreams::Status::kTimeout) {
    if (probe_->peer_closed()) {
      on_disconnect();
      return false;
    }
    return true;
  }
  if (status == OutputStreams::Status::kDone) {
    finish(out);
    done = true;
    return true;
  }
  ctx_.metrics().record_output(timings_[index], res, arrival_ts_);
  if (!cached_tokens_ && ctx_.config().enable_prompt_tokens_details)
    cached_tokens_ = res.num_cached_tokens;
  if (failed_) return true;
  try {
    emit_output(out, index, res);
  } catch (const std::exception& e) {
    out += sse_event(error_json(ApiError(500, e.what())));
    failed_ = true;
  }
  return true;
}

void SseStreamer::on_disconnect() { ctx_.metrics().record_abort(streams_->abort_unfinished() * n_); }

void SseStreamer::finish(std::string& out) {
  std::optional<std::string> err = streams_->error();
  int num_closed = 0;
  for (size_t i = 0; i < streams_->size(); ++i) num_closed += streams_->closed_early(i) ? 1 : 0;
  if (!failed_ && (err || num_closed > 0)) {
    if (!err) ctx_.metrics().record_abort(num_closed * n_);
    std::string message = err ? *err : "The server is shutting down; the request was aborted.";
    out += sse_event(error_json(ApiError(err ? 500 : 503, message)));
  } else if (!failed_) {
    emit_usage(out);
  }
  out += kSseDone;
}

}  // namespace cvllm::server
