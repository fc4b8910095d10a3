// Prometheus metrics with vLLM's names (vllm/v1/metrics/loggers.py): engine gauges and counters
// read from AsyncEngine snapshots, latency histograms observed by the request handlers, and the
// periodic "Avg prompt throughput ..." log line (every 10 s, like vLLM's LoggingStatLogger).
// Every series carries vLLM's labels: model_name="<served name>", engine="0".
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cvllm/outputs.h"
#include "engine/async_engine.h"

namespace cvllm::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> buckets);
  void observe(double value, int64_t count = 1);
  // Appends _bucket/_sum/_count lines (with HELP/TYPE) for `name` with `labels` ("a=\"b\",...").
  void render(std::string& out, const std::string& name, const std::string& help,
              const std::string& labels) const;

 private:
  std::vector<double> upper_bounds_;
  mutable std::mutex mutex_;
  std::vector<int64_t> counts_;  // [buckets + 1], the last is +Inf
  double sum_ = 0.0;
  int64_t count_ = 0;
};

// Timing state of one prompt's stream while its handler reads it.
struct RequestTiming {
  double last_token_ts = 0.0;
  int num_tokens_seen = 0;
};

class ServerMetrics {
 public:
  explicit ServerMetrics(std::string model_name);

  // Called by handlers for every output they read (DELTA or FINAL_ONLY): observes TTFT,
  // inter-token latency and, once finished, end-to-end latency and finish reasons.
  void record_output(RequestTiming& timing, const RequestOutput& out, double arrival_ts);
  // A request whose client went away (or that a shutdown aborted) before it finished: its
  // unfinished choices count as finished_reason="abort".
  void record_abort(int num_choices);

  // The whole /metrics text (Prometheus exposition format 0.0.4).
  std::string render(const EngineSnapshot& snapshot) const;
  const std::string& labels() const { return labels_; }

 private:
  std::string model_name_;
  std::string labels_;
  Histogram ttft_;
  Histogram itl_;
  Histogram e2e_;
  Histogram tpot_;
  mutable std::mutex mutex_;
  std::map<std::string, int64_t> finished_by_reason_;
};

// Logs vLLM's periodic engine line until stopped. Idle intervals log at DEBUG.
class StatsLogger {
 public:
  StatsLogger(const AsyncEngine& engine, double interval_s);
  ~StatsLogger();
  void stop();

 private:
  void run();

  const AsyncEngine& engine_;
  double interval_s_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

// The line itself, from two snapshots `elapsed_s` apart (exposed for tests).
std::string format_stats_line(const EngineSnapshot& prev, const EngineSnapshot& now,
                              double elapsed_s);

}  // namespace cvllm::server
