#include "server/metrics.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "util/logging.h"
#include "util/system.h"

namespace cvllm::server {
namespace {

// vLLM's bucket boundaries (seconds).
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02,  0.04,  0.06,  0.08, 0.1,
                                          0.25,  0.5,   0.75, 1.0,   2.5,   5.0,   7.5,  10.0,
                                          20.0,  40.0,  80.0, 160.0, 640.0, 2560.0};
const std::vector<double> kItlBuckets = {0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,  0.3,  0.4, 0.5,
                                         0.75, 1.0,   2.5,  5.0,   7.5, 10.0, 20.0, 40.0, 80.0};
const std::vector<double> kE2eBuckets = {0.3,  0.5,   0.8,   1.0,   1.5,   2.0,    2.5,
                                         5.0,  10.0,  15.0,  20.0,  30.0,  40.0,   50.0,
                                         60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};

// Prometheus floats: Python's repr of a float ("1.0", "0.25", "1e-05").
std::string prom_float(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[64];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return buf;
  }
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

void header(std::string& out, const std::string& name, const std::string& help, const char* type) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void sample(std::string& out, const std::string& name, const std::string& labels, double value) {
  out += name + "{" + labels + "} " + prom_float(value) + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> buckets)
    : upper_bounds_(std::move(buckets)), counts_(upper_bounds_.size() + 1, 0) {}

void Histogram::observe(double value, int64_t count) {
  if (count <= 0 || std::isnan(value)) return;
  size_t i =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  std::lock_guard<std::mutex> lock(mutex_);
  counts_[i] += count;
  sum_ += value * static_cast<double>(count);
  count_ += count;
}

void Histogram::render(std::string& out, const std::string& name, const std::string& help,
                       const std::string& labels) const {
  std::vector<int64_t> counts;
  double sum;
  int64_t count;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    counts = counts_;
    sum = sum_;
    count = count_;
  }
  header(out, name, help, "histogram");
  int64_t cumulative = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    cumulative += counts[i];
    std::string le = i < upper_bounds_.size() ? prom_float(upper_bounds_[i]) : "+Inf";
    sample(out, name + "_bucket", labels + ",le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  sample(out, name + "_count", labels, static_cast<double>(count));
  sample(out, name + "_sum", labels, sum);
}

ServerMetrics::ServerMetrics(std::string model_name)
    : model_name_(std::move(model_name)),
      ttft_(kTtftBuckets),
      itl_(kItlBuckets),
      e2e_(kE2eBuckets),
      tpot_(kItlBuckets) {
  std::string escaped;
  for (char c : model_name_) {
    if (c == '\\' || c == '"') escaped += '\\';
    if (c == '\n') {
      escaped += "\\n";
      continue;
    }
    escaped += c;
  }
  labels_ = "engine=\"0\",model_name=\"" + escaped + "\"";
}

void ServerMetrics::record_output(RequestTiming& timing, const RequestOutput& out,
                                  double arrival_ts) {
  if (out.metrics) {
    const RequestMetrics& m = *out.metrics;
    if (m.num_generation_tokens > timing.num_tokens_seen && m.first_token_ts > 0.0) {
      if (timing.num_tokens_seen == 0) {
        ttft_.observe(m.first_token_latency);
        // FINAL_ONLY outputs arrive once: spread the decode time evenly over its tokens.
        int rest = m.num_generation_tokens - 1;
        if (rest > 0) itl_.observe((m.last_token_ts - m.first_token_ts) / rest, rest);
      } else {
        itl_.observe(m.last_token_ts - timing.last_token_ts);
      }
      timing.num_tokens_seen = m.num_generation_tokens;
      timing.last_token_ts = m.last_token_ts;
    }
  }
  if (!out.finished) return;
  double now = monotonic_seconds();
  e2e_.observe(now - arrival_ts);
  if (out.metrics && out.metrics->num_generation_tokens > 1) {
    const RequestMetrics& m = *out.metrics;
    tpot_.observe((m.last_token_ts - m.first_token_ts) / (m.num_generation_tokens - 1));
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const CompletionOutput& c : out.outputs) {
    ++finished_by_reason_[c.finish_reason.value_or("abort")];
  }
}

void ServerMetrics::record_abort(int num_choices) {
  std::lock_guard<std::mutex> lock(mutex_);
  finished_by_reason_["abort"] += num_choices;
}

std::string ServerMetrics::render(const EngineSnapshot& s) const {
  std::string out;
  const std::string& l = labels_;
  header(out, "vllm:num_requests_running", "Number of requests in model execution batches.",
         "gauge");
  sample(out, "vllm:num_requests_running", l, s.scheduler.num_running_reqs);
  header(out, "vllm:num_requests_waiting", "Number of requests waiting to be processed.", "gauge");
  sample(out, "vllm:num_requests_waiting", l, s.scheduler.num_waiting_reqs);
  header(out, "vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.", "gauge");
  sample(out, "vllm:kv_cache_usage_perc", l, s.scheduler.kv_cache_usage);
  header(out, "vllm:prefix_cache_queries",
         "Prefix cache queries, in terms of number of queried tokens.", "counter");
  sample(out, "vllm:prefix_cache_queries_total", l,
         static_cast<double>(s.scheduler.prefix_cache.queries));
  header(out, "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
         "counter");
  sample(out, "vllm:prefix_cache_hits_total", l,
         static_cast<double>(s.scheduler.prefix_cache.hits));
  header(out, "vllm:num_preemptions", "Cumulative number of preemption from the engine.",
         "counter");
  sample(out, "vllm:num_preemptions_total", l, static_cast<double>(s.scheduler.num_preemptions));
  header(out, "vllm:prompt_tokens", "Number of prefill tokens processed.", "counter");
  sample(out, "vllm:prompt_tokens_total", l, static_cast<double>(s.prompt_tokens_total));
  header(out, "vllm:generation_tokens", "Number of generation tokens processed.", "counter");
  sample(out, "vllm:generation_tokens_total", l, static_cast<double>(s.generation_tokens_total));
  header(out, "vllm:request_success", "Count of successfully processed requests.", "counter");
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::map<std::string, int64_t> reasons = finished_by_reason_;
    for (const char* r : {"stop", "length", "abort"}) reasons.emplace(r, 0);
    for (const auto& [reason, n] : reasons) {
      sample(out, "vllm:request_success_total", l + ",finished_reason=\"" + reason + "\"",
             static_cast<double>(n));
    }
  }
  ttft_.render(out, "vllm:time_to_first_token_seconds",
               "Histogram of time to first token in seconds.", l);
  itl_.render(out, "vllm:inter_token_latency_seconds",
              "Histogram of inter-token latency in seconds.", l);
  tpot_.render(out, "vllm:request_time_per_output_token_seconds",
               "Histogram of time_per_output_token_seconds per request.", l);
  e2e_.render(out, "vllm:e2e_request_latency_seconds",
              "Histogram of e2e request latency in seconds.", l);
  return out;
}

std::string format_stats_line(const EngineSnapshot& prev, const EngineSnapshot& now,
                              double elapsed_s) {
  double dt = elapsed_s > 0 ? elapsed_s : 1.0;
  double prompt_tps = static_cast<double>(now.prompt_tokens_total - prev.prompt_tokens_total) / dt;
  double gen_tps =
      static_cast<double>(now.generation_tokens_total - prev.generation_tokens_total) / dt;
  int64_t queries = now.scheduler.prefix_cache.queries - prev.scheduler.prefix_cache.queries;
  int64_t hits = now.scheduler.prefix_cache.hits - prev.scheduler.prefix_cache.hits;
  if (queries <= 0) {  // nothing new this interval: report the lifetime rate
    queries = now.scheduler.prefix_cache.queries;
    hits = now.scheduler.prefix_cache.hits;
  }
  double hit_rate =
      queries > 0 ? 100.0 * static_cast<double>(hits) / static_cast<double>(queries) : 0.0;
  char buf[512];
  std::snprintf(buf, sizeof(buf),
                "Avg prompt throughput: %.1f tokens/s, Avg generation throughput: %.1f tokens/s, "
                "Running: %d reqs, Waiting: %d reqs, GPU KV cache usage: %.1f%%, Prefix cache hit "
                "rate: %.1f%%",
                prompt_tps, gen_tps, now.scheduler.num_running_reqs, now.scheduler.num_waiting_reqs,
                100.0 * now.scheduler.kv_cache_usage, hit_rate);
  return buf;
}

StatsLogger::StatsLogger(const AsyncEngine& engine, double interval_s)
    : engine_(engine), interval_s_(interval_s) {
  thread_ = std::thread([this] { run(); });
}

StatsLogger::~StatsLogger() {
  stop();
}

void StatsLogger::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void StatsLogger::run() {
  EngineSnapshot prev = engine_.snapshot();
  double prev_ts = monotonic_seconds();
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stop_) {
    wake_.wait_for(lock, std::chrono::duration<double>(interval_s_), [&] { return stop_; });
    if (stop_) break;
    EngineSnapshot now = engine_.snapshot();
    double ts = monotonic_seconds();
    bool idle = now.prompt_tokens_total == prev.prompt_tokens_total &&
                now.generation_tokens_total == prev.generation_tokens_total &&
                now.scheduler.num_running_reqs == 0 && now.scheduler.num_waiting_reqs == 0;
    std::string line = format_stats_line(prev, now, ts - prev_ts);
    if (idle)
      LOG_DEBUG(line);
    else
      LOG_INFO(line);
    prev = now;
    prev_ts = ts;
  }
}

}  // namespace cvllm::server
