// `cvllm bench latency|throughput`: engine speed as JSON (numbers go in BENCHMARKS.md).
// latency: prompt-processing and decode speed of one batch.
//   cvllm bench latency --input-len 512 --output-len 128 --batch-size 1 --num-iters 3
// Each iteration submits batch_size random-token prompts (ignore_eos, greedy) and times the
// steps: until every prompt has produced its first token is "prefill", the rest is "decode".
// --use-beam-search --n W (vLLM's flags): each prompt beam-searches with width W instead; the
// output adds the peak KV-cache use and the tokens the forward passes computed, next to what
// vLLM's way (every beam re-submitted as a new request each step) would prefill without a
// prefix-cache hit.
#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <random>

#include "cli/commands.h"
#include "engine/llm_engine.h"
#include "kernels/backend.h"
#include "util/error.h"
#include "util/system.h"

namespace cvllm::cli {
namespace {

struct IterationTiming {
  double prefill_s = 0.0;
  double decode_s = 0.0;
  int64_t decode_tokens = 0;
};

IterationTiming run_iteration(LLMEngine& engine, int batch_size, int input_len, int output_len,
                              std::mt19937& rng, int64_t& next_id) {
  SamplingParams params;
  params.temperature = 0.0;
  params.ignore_eos = true;
  params.max_tokens = output_len;
  params.output_kind = RequestOutputKind::kDelta;
  std::uniform_int_distribution<int32_t> token(100, static_cast<int32_t>(engine.model_config().vocab_size) - 1);
  for (int b = 0; b < batch_size; ++b) {
    std::vector<int32_t> ids(input_len);
    for (int32_t& t : ids) t = token(rng);
    engine.add_request(std::to_string(next_id++), Prompt(ids), params);
  }
  IterationTiming timing;
  double start = monotonic_seconds();
  int64_t first_tokens = 0, total_tokens = 0;
  double prefill_end = 0.0;
  while (engine.has_unfinished_requests()) {
    for (const RequestOutput& out : engine.step()) {
      for (const CompletionOutput& c : out.outputs) total_tokens += static_cast<int64_t>(c.token_ids.size());
    }
    if (prefill_end == 0.0 && total_tokens >= batch_size) {
      prefill_end = monotonic_seconds();
      first_tokens = total_tokens;
    }
  }
  double end = monotonic_seconds();
  timing.prefill_s = prefill_end - start;
  timing.decode_s = end - prefill_end;
  timing.decode_tokens = total_tokens - first_tokens;
  return timing;
}

struct BeamTiming {
  double seconds = 0.0;
  double peak_kv_usage = 0.0;  // fraction of the KV cache
};

BeamTiming run_beam_iteration(LLMEngine& engine, int batch_size, int input_len, int output_len,
                              int width, std::mt19937& rng, int64_t& next_id) {
  BeamSearchParams params(width, output_len);
  params.ignore_eos = true;
  std::uniform_int_distribution<int32_t> token(100, static_cast<int32_t>(engine.model_config().vocab_size) - 1);
  for (int b = 0; b < batch_size; ++b) {
    std::vector<int32_t> ids(input_len);
    for (int32_t& t : ids) t = token(rng);
    engine.add_beam_search_request(std::to_string(next_id++), Prompt(ids), params);
  }
  BeamTiming timing;
  double start = monotonic_seconds();
  while (engine.has_unfinished_requests()) {
    engine.step();
    timing.peak_kv_usage = std::max(timing.peak_kv_usage, engine.scheduler_stats().kv_cache_usage);
  }
  engine.take_finished_beam_searches();
  timing.seconds = monotonic_seconds() - start;
  return timing;
}

int report_beam_latency(LLMEngine& engine, int batch_size, int input_len, int output_len, int width,
                        int iters, int warmup) {
  std::mt19937 rng(1234);
  int64_t next_id = 0;
  for (int i = 0; i < warmup; ++i) {
    run_beam_iteration(engine, batch_size, input_len, output_len, width, rng, next_id);
  }
  double total = 0.0, peak_kv = 0.0;
  nlohmann::json latencies = nlohmann::json::array();
  for (int i = 0; i < iters; ++i) {
    BeamTiming t = run_beam_iteration(engine, batch_size, input_len, output_len, width, rng, next_id);
    total += t.seconds;
    peak_kv = std::max(peak_kv, t.peak_kv_usage);
    latencies.push_back(t.seconds);
  }
  // Tokens through the model per prompt: in the engine, the prompt once and then one token per
  // live beam per step; vLLM's way, every beam's whole sequence as a fresh prompt each step.
  int64_t engine_tokens = input_len, naive_tokens = 0;
  for (int t = 0; t < output_len; ++t) {
    int64_t beams = t == 0 ? 1 : width;
    if (t > 0) engine_tokens += beams;
    naive_tokens += beams * (input_len + t);
  }
  nlohmann::json out;
  out["model"] = engine.model_path();
  out["backend"] = engine.backend().name();
  out["use_beam_search"] = true;
  out["beam_width"] = width;
  out["input_len"] = input_len;
  out["output_len"] = output_len;
  out["batch_size"] = batch_size;
  out["num_iters"] = iters;
  out["avg_latency_s"] = total / iters;
  out["latencies_s"] = latencies;
  out["peak_kv_cache_usage"] = peak_kv;
  out["forward_tokens_per_prompt"] = engine_tokens;
  out["reprefill_tokens_per_prompt"] = naive_tokens;
  std::cout << out.dump(2) << std::endl;
  return 0;
}

int bench_latency(int argc, char** argv) {
  std::set<std::string> values = engine_value_flags();
  values.insert({"input-len", "output-len", "batch-size", "num-iters", "num-iters-warmup", "n"});
  std::set<std::string> bools = engine_bool_flags();
  bools.insert("use-beam-search");
  Flags flags(argc, argv, 3, values, bools);
  int input_len = static_cast<int>(flags.get_int("input-len").value_or(32));
  int output_len = static_cast<int>(flags.get_int("output-len").value_or(128));
  int batch_size = static_cast<int>(flags.get_int("batch-size").value_or(8));
  int iters = static_cast<int>(flags.get_int("num-iters").value_or(3));
  int warmup = static_cast<int>(flags.get_int("num-iters-warmup").value_or(1));
  if (input_len < 1 || output_len < 1 || batch_size < 1 || iters < 1 || warmup < 0) {
    throw ValueError("input-len, output-len, batch-size and num-iters must be positive");
  }
  EngineArgs args = engine_args_from_flags(flags);
  // The whole batch's prompts are processed in one step, so prefill is measured as one pass.
  args.max_num_batched_tokens = std::max(args.max_num_batched_tokens, batch_size * input_len);
  args.max_num_seqs = std::max(args.max_num_seqs, batch_size);
  args.enable_prefix_caching = false;  // random prompts would not hit anyway; keep it out of the way
  const int width = static_cast<int>(flags.get_int("n").value_or(1));
  if (flags.get_bool("use-beam-search")) {
    if (width < 1) throw ValueError("--n (the beam width) must be positive");
    args.enable_prefix_caching = true;  // beams share their prompt's blocks through it
    LLMEngine engine(args);
    return report_beam_latency(engine, batch_size, input_len, output_len, width, iters, warmup);
  }
  LLMEngine engine(args);
  std::mt19937 rng(1234);
  int64_t next_id = 0;
  for (int i = 0; i < warmup; ++i) run_iteration(engine, batch_size, input_len, output_len, rng, next_id);
  std::vector<IterationTiming> runs;
  for (int i = 0; i < iters; ++i) runs.push_back(run_iteration(engine, batch_size, input_len, output_len, rng, next_id));

  double prefill = 0.0, decode = 0.0;
  int64_t decode_tokens = 0;
  nlohmann::json latencies = nlohmann::json::array();
  for (const IterationTiming& t : runs) {
    prefill += t.prefill_s;
    decode += t.decode_s;
    decode_tokens += t.decode_tokens;
    latencies.push_back(t.prefill_s + t.decode_s);
  }
  nlohmann::json out;
  out["model"] = engine.model_path();
  out["backend"] = engine.backend().name();
  out["input_len"] = input_len;
  out["output_len"] = output_len;
  out["batch_size"] = batch_size;
  out["num_iters"] = iters;
  out["avg_latency_s"] = (prefill + decode) / iters;
  out["latencies_s"] = latencies;
  out["avg_prefill_s"] = prefill / iters;
  out["prompt_tokens_per_s"] = static_cast<double>(batch_size) * input_len * iters / prefill;
  out["decode_tokens_per_s"] = decode > 0 ? static_cast<double>(decode_tokens) / decode : 0.0;
  std::cout << out.dump(2) << std::endl;
  return 0;
}

int64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return 0;
}

// vLLM's `bench throughput`: submit every request at once and let the engine batch them.
// Datasets: "random" (independent random-token prompts) or "shared-prefix" (every prompt starts
// with the same --prefix-len tokens, so prefix caching matters).
int bench_throughput(int argc, char** argv) {
  std::set<std::string> values = engine_value_flags();
  values.insert({"input-len", "output-len", "num-prompts", "dataset-name", "prefix-len", "output-json"});
  Flags flags(argc, argv, 3, values, engine_bool_flags());
  int input_len = static_cast<int>(flags.get_int("input-len").value_or(128));
  int output_len = static_cast<int>(flags.get_int("output-len").value_or(128));
  int num_prompts = static_cast<int>(flags.get_int("num-prompts").value_or(64));
  int prefix_len = static_cast<int>(flags.get_int("prefix-len").value_or(0));
  std::string dataset = flags.get("dataset-name").value_or(prefix_len > 0 ? "shared-prefix" : "random");
  if (dataset != "random" && dataset != "shared-prefix") {
    throw ValueError("--dataset-name must be 'random' or 'shared-prefix', got '" + dataset + "'");
  }
  if (input_len < 1 || output_len < 1 || num_prompts < 1 || prefix_len < 0 || prefix_len > input_len) {
    throw ValueError("input-len, output-len and num-prompts must be positive; prefix-len in [0, input-len]");
  }
  EngineArgs args = engine_args_from_flags(flags);
  LLMEngine engine(args);
  std::mt19937 rng(0);
  std::uniform_int_distribution<int32_t> token(100, static_cast<int32_t>(engine.model_config().vocab_size) - 1);
  std::vector<int32_t> prefix(dataset == "shared-prefix" ? prefix_len : 0);
  for (int32_t& t : prefix) t = token(rng);
  SamplingParams params;
  params.temperature = 1.0;
  params.ignore_eos = true;
  params.max_tokens = output_len;
  params.output_kind = RequestOutputKind::kFinalOnly;
  double start = monotonic_seconds();
  for (int i = 0; i < num_prompts; ++i) {
    std::vector<int32_t> ids = prefix;
    while (static_cast<int>(ids.size()) < input_len) ids.push_back(token(rng));
    engine.add_request(std::to_string(i), Prompt(ids), params);
  }
  int64_t prompt_tokens = 0, output_tokens = 0;
  while (engine.has_unfinished_requests()) {
    for (const RequestOutput& out : engine.step()) {
      if (!out.finished) continue;
      prompt_tokens += static_cast<int64_t>(out.prompt_token_ids.size());
      for (const CompletionOutput& c : out.outputs) output_tokens += static_cast<int64_t>(c.token_ids.size());
    }
  }
  double elapsed = monotonic_seconds() - start;
  SchedulerStats stats = engine.scheduler_stats();
  nlohmann::json out;
  out["model"] = engine.model_path();
  out["backend"] = engine.backend().name();
  out["dataset_name"] = dataset;
  out["num_requests"] = num_prompts;
  out["input_len"] = input_len;
  out["output_len"] = output_len;
  out["max_num_seqs"] = args.max_num_seqs;
  out["elapsed_time"] = elapsed;
  out["total_num_tokens"] = prompt_tokens + output_tokens;
  out["total_output_tokens"] = output_tokens;
  out["requests_per_second"] = num_prompts / elapsed;
  out["tokens_per_second"] = static_cast<double>(prompt_tokens + output_tokens) / elapsed;
  out["output_throughput"] = static_cast<double>(output_tokens) / elapsed;
  out["peak_memory_bytes"] = peak_rss_bytes();
  out["prefix_cache_hit_rate"] = stats.prefix_cache.queries > 0
      ? static_cast<double>(stats.prefix_cache.hits) / static_cast<double>(stats.prefix_cache.queries) : 0.0;
  out["num_preemptions"] = stats.num_preemptions;
  std::cerr << "Throughput: " << num_prompts / elapsed << " requests/s, "
            << (prompt_tokens + output_tokens) / elapsed << " total tokens/s, "
            << output_tokens / elapsed << " output tokens/s\n";
  if (auto path = flags.get("output-json")) {
    std::ofstream file(*path);
    if (!file) throw ValueError("cannot write --output-json file " + *path);
    file << out.dump(2) << std::endl;
  }
  std::cout << out.dump(2) << std::endl;
  return 0;
}

}  // namespace

int run_bench(int argc, char** argv) {
  std::string kind = argc >= 3 ? argv[2] : "";
  if (kind == "latency") return bench_latency(argc, argv);
  if (kind == "throughput") return bench_throughput(argc, argv);
  throw ValueError("usage: cvllm bench {latency,throughput} [--input-len N --output-len N ...]");
}

}  // namespace cvllm::cli
