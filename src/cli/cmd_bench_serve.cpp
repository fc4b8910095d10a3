// `cvllm bench serve`: load-tests a running OpenAI-compatible server the way `vllm bench serve`
// does, and prints vLLM's result table (and, with --save-result, its JSON).
//   cvllm bench serve --base-url http://127.0.0.1:8000 --num-prompts 200 --max-concurrency 64
//       --random-input-len 128 --random-output-len 64 --request-rate inf
// Each request streams from /v1/completions with random token-id prompts (vLLM's "random"
// dataset, ignore_eos so outputs have the asked length). TTFT is the time to the first content
// chunk, ITL the gaps between chunks, TPOT (e2e - ttft) / (tokens - 1); tokens come from the
// final usage chunk.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/flags.h"
#include "util/error.h"
#include "util/system.h"

namespace cvllm::cli {
namespace {

struct BenchConfig {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string endpoint = "/v1/completions";
  std::string model;
  std::string api_key;
  int num_prompts = 100;
  int max_concurrency = 0;  // 0: no limit
  double request_rate = 0;  // requests/s; 0 (inf): all at once
  int input_len = 128;
  int output_len = 64;
  int vocab_low = 100, vocab_high = 20000;
  uint64_t seed = 0;
  double timeout_s = 600;
};

struct RequestResult {
  bool success = false;
  std::string error;
  double ttft = 0, e2e = 0;
  std::vector<double> itl;
  int64_t prompt_tokens = 0, output_tokens = 0;
};

// One streaming completion; parses the SSE events as they arrive.
RequestResult send_request(const BenchConfig& cfg, const std::vector<int32_t>& prompt) {
  RequestResult r;
  httplib::Client client(cfg.host, cfg.port);
  client.set_read_timeout(static_cast<time_t>(cfg.timeout_s), 0);
  client.set_connection_timeout(30, 0);
  httplib::Headers headers;
  if (!cfg.api_key.empty()) headers.emplace("Authorization", "Bearer " + cfg.api_key);
  nlohmann::json body = {{"prompt", prompt},   {"max_tokens", cfg.output_len},
                         {"stream", true},     {"ignore_eos", true},
                         {"temperature", 0.0}, {"stream_options", {{"include_usage", true}}}};
  if (!cfg.model.empty()) body["model"] = cfg.model;
  std::string buffer;
  double start = monotonic_seconds(), last = start;
  bool got_first = false;
  auto on_event = [&](const std::string& data) {
    if (data == "[DONE]") return;
    nlohmann::json chunk = nlohmann::json::parse(data, nullptr, false);
    if (chunk.is_discarded()) return;
    if (chunk.contains("error")) {
      r.error = chunk["error"].dump();
      return;
    }
    if (chunk.contains("usage") && chunk["usage"].is_object()) {
      r.prompt_tokens = chunk["usage"].value("prompt_tokens", 0);
      r.output_tokens = chunk["usage"].value("completion_tokens", 0);
    }
    if (!chunk.contains("choices") || chunk["choices"].empty()) return;
    double now = monotonic_seconds();
    if (!got_first) {
      r.ttft = now - start;
      got_first = true;
    } else {
      r.itl.push_back(now - last);
    }
    last = now;
  };
  httplib::Request req;
  req.method = "POST";
  req.path = cfg.endpoint;
  req.headers = headers;
  req.body = body.dump();
  req.set_header("Content-Type", "application/json");
  req.content_receiver = [&](const char* data, size_t len, uint64_t, uint64_t) {
    buffer.append(data, len);
    size_t pos;
    while ((pos = buffer.find("\n\n")) != std::string::npos) {
      std::string event = buffer.substr(0, pos);
      buffer.erase(0, pos + 2);
      if (event.rfind("data: ", 0) == 0) on_event(event.substr(6));
    }
    return true;
  };
  httplib::Response res;
  httplib::Error err = httplib::Error::Success;
  bool ok = client.send(req, res, err);
  r.e2e = monotonic_seconds() - start;
  if (!ok) {
    r.error = cat("connection error ", static_cast<int>(err));
  } else if (res.status != 200) {
    r.error = cat("HTTP ", res.status, ": ", res.body);
  }
  r.success = r.error.empty() && got_first;
  return r;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  double idx = p / 100.0 * static_cast<double>(v.size() - 1);
  size_t lo = static_cast<size_t>(idx);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (idx - static_cast<double>(lo));
}

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0.0 : s / static_cast<double>(v.size());
}

void parse_base_url(const std::string& url, BenchConfig& cfg) {
  std::string rest = url;
  if (rest.rfind("http://", 0) == 0)
    rest = rest.substr(7);
  else if (rest.find("://") != std::string::npos)
    throw ValueError("--base-url: only http:// is supported");
  size_t slash = rest.find('/');
  if (slash != std::string::npos) rest = rest.substr(0, slash);
  size_t colon = rest.rfind(':');
  if (colon == std::string::npos) {
    cfg.host = rest;
    cfg.port = 80;
  } else {
    cfg.host = rest.substr(0, colon);
    cfg.port = std::stoi(rest.substr(colon + 1));
  }
}

BenchConfig config_from_flags(const Flags& f) {
  BenchConfig cfg;
  if (auto v = f.get("base-url")) parse_base_url(*v, cfg);
  if (auto v = f.get("host")) cfg.host = *v;
  if (auto v = f.get_int("port")) cfg.port = static_cast<int>(*v);
  if (auto v = f.get("endpoint")) cfg.endpoint = *v;
  if (auto v = f.get("model")) cfg.model = *v;
  if (auto v = f.get("api-key")) cfg.api_key = *v;
  if (auto v = f.get_int("num-prompts")) cfg.num_prompts = static_cast<int>(*v);
  if (auto v = f.get_int("max-concurrency")) cfg.max_concurrency = static_cast<int>(*v);
  if (auto v = f.get("request-rate"); v && *v != "inf")
    cfg.request_rate = *f.get_double("request-rate");
  if (auto v = f.get_int("random-input-len")) cfg.input_len = static_cast<int>(*v);
  if (auto v = f.get_int("random-output-len")) cfg.output_len = static_cast<int>(*v);
  if (auto v = f.get_int("seed")) cfg.seed = static_cast<uint64_t>(*v);
  if (auto v = f.get_int("vocab-high")) cfg.vocab_high = static_cast<int>(*v);
  if (cfg.num_prompts < 1 || cfg.input_len < 1 || cfg.output_len < 1) {
    throw ValueError("--num-prompts, --random-input-len and --random-output-len must be positive");
  }
  return cfg;
}

nlohmann::json summarize(const BenchConfig& cfg, const std::vector<RequestResult>& results,
                         double duration) {
  std::vector<double> ttft, tpot, itl, e2e;
  int64_t completed = 0, input_tokens = 0, output_tokens = 0;
  for (const RequestResult& r : results) {
    if (!r.success) continue;
    ++completed;
    input_tokens += r.prompt_tokens;
    output_tokens += r.output_tokens;
    ttft.push_back(r.ttft * 1000);
    e2e.push_back(r.e2e * 1000);
    for (double x : r.itl) itl.push_back(x * 1000);
    if (r.output_tokens > 1)
      tpot.push_back((r.e2e - r.ttft) / static_cast<double>(r.output_tokens - 1) * 1000);
  }
  nlohmann::json j;
  j["num_prompts"] = cfg.num_prompts;
  j["max_concurrency"] =
      cfg.max_concurrency > 0 ? nlohmann::json(cfg.max_concurrency) : nlohmann::json(nullptr);
  j["duration"] = duration;
  j["completed"] = completed;
  j["failed"] = static_cast<int64_t>(results.size()) - completed;
  j["total_input_tokens"] = input_tokens;
  j["total_output_tokens"] = output_tokens;
  j["request_throughput"] = completed / duration;
  j["output_throughput"] = output_tokens / duration;
  j["total_token_throughput"] = (input_tokens + output_tokens) / duration;
  auto stats = [&](const char* name, const std::vector<double>& v) {
    j[cat("mean_", name, "_ms")] = mean(v);
    j[cat("median_", name, "_ms")] = percentile(v, 50);
    j[cat("p99_", name, "_ms")] = percentile(v, 99);
  };
  stats("ttft", ttft);
  stats("tpot", tpot);
  stats("itl", itl);
  stats("e2el", e2e);
  for (const RequestResult& r : results) {
    if (!r.success) {
      j["first_error"] = r.error;
      break;
    }
  }
  return j;
}

void print_table(const nlohmann::json& j) {
  auto line = [](const char* label, const std::string& value) {
    std::printf("%-40s %s\n", label, value.c_str());
  };
  auto num = [](double x) {
    char b[64];
    std::snprintf(b, sizeof(b), "%.2f", x);
    return std::string(b);
  };
  std::printf("============ Serving Benchmark Result ============\n");
  line("Successful requests:", std::to_string(j["completed"].get<int64_t>()));
  line("Failed requests:", std::to_string(j["failed"].get<int64_t>()));
  line("Benchmark duration (s):", num(j["duration"]));
  line("Total input tokens:", std::to_string(j["total_input_tokens"].get<int64_t>()));
  line("Total generated tokens:", std::to_string(j["total_output_tokens"].get<int64_t>()));
  line("Request throughput (req/s):", num(j["request_throughput"]));
  line("Output token throughput (tok/s):", num(j["output_throughput"]));
  line("Total Token throughput (tok/s):", num(j["total_token_throughput"]));
  for (const char* m : {"ttft", "tpot", "itl", "e2el"}) {
    std::string upper = m;
    for (char& c : upper) c = static_cast<char>(std::toupper(c));
    std::printf("%s\n", cat("---------------", upper, "---------------").c_str());
    line(cat("Mean ", upper, " (ms):").c_str(), num(j[cat("mean_", m, "_ms")]));
    line(cat("Median ", upper, " (ms):").c_str(), num(j[cat("median_", m, "_ms")]));
    line(cat("P99 ", upper, " (ms):").c_str(), num(j[cat("p99_", m, "_ms")]));
  }
  std::printf("==================================================\n");
}

}  // namespace

int run_bench_serve(int argc, char** argv) {
  Flags flags(argc, argv, 3,
              {"base-url", "host", "port", "endpoint", "model", "api-key", "num-prompts",
               "max-concurrency", "request-rate", "random-input-len", "random-output-len", "seed",
               "vocab-high", "result-filename"},
              {"save-result"});
  BenchConfig cfg = config_from_flags(flags);
  std::mt19937_64 rng(cfg.seed);
  std::uniform_int_distribution<int32_t> token(cfg.vocab_low,
                                               std::max(cfg.vocab_low, cfg.vocab_high - 1));
  std::vector<std::vector<int32_t>> prompts(cfg.num_prompts);
  for (auto& p : prompts) {
    p.resize(cfg.input_len);
    for (int32_t& t : p) t = token(rng);
  }
  // Arrival times: Poisson at --request-rate, or all at once.
  std::vector<double> arrival(cfg.num_prompts, 0.0);
  if (cfg.request_rate > 0) {
    std::exponential_distribution<double> gap(cfg.request_rate);
    for (int i = 1; i < cfg.num_prompts; ++i) arrival[i] = arrival[i - 1] + gap(rng);
  }
  int concurrency =
      cfg.max_concurrency > 0 ? std::min(cfg.max_concurrency, cfg.num_prompts) : cfg.num_prompts;
  std::vector<RequestResult> results(cfg.num_prompts);
  std::atomic<int> next{0};
  double start = monotonic_seconds();
  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&] {
      while (true) {
        int i = next.fetch_add(1);
        if (i >= cfg.num_prompts) return;
        double wait = start + arrival[i] - monotonic_seconds();
        if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        results[i] = send_request(cfg, prompts[i]);
      }
    });
  }
  for (std::thread& t : workers) t.join();
  double duration = monotonic_seconds() - start;
  nlohmann::json summary = summarize(cfg, results, duration);
  print_table(summary);
  if (flags.get_bool("save-result")) {
    std::string path = flags.get("result-filename").value_or("bench_serve_result.json");
    std::ofstream(path) << summary.dump(2) << "\n";
  }
  return summary["failed"].get<int64_t>() == 0 ? 0 : 1;
}

}  // namespace cvllm::cli
