// Helpers for golden tests: fixture paths, JSON loading, and a harness that runs a model's forward
// pass directly (one request, all positions) with every intermediate captured by name.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cvllm/sampling_params.h"
#include "kernels/cpu/cpu_backend.h"
#include "loader/gguf.h"
#include "loader/model_resolver.h"
#include "loader/weight_source.h"
#include "models/registry.h"

namespace cvllm::testing {

inline std::string golden_path(const std::string& name) {
  return std::string(CVLLM_SOURCE_DIR) + "/tests/golden/data/" + name;
}

inline nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  return nlohmann::json::parse(in);
}

// Greedy tokens against a fixture prompt's greedy_token_ids (with greedy_top5 per step): equal,
// or differing first where the reference barely preferred its token (its top-1 within `margin`
// of the token chosen; a note is printed). After a divergence the continuations are not
// comparable. `label` names the prompt in messages.
inline void expect_greedy_up_to_near_tie(const nlohmann::json& ref, const std::vector<int32_t>& ours,
                                         double margin, const std::string& label) {
  std::vector<int32_t> expected = ref["greedy_token_ids"].get<std::vector<int32_t>>();
  EXPECT_EQ(ours.size(), expected.size()) << label;
  for (size_t s = 0; s < expected.size() && s < ours.size(); ++s) {
    if (ours[s] == expected[s]) continue;
    const double best = ref["greedy_top5"][s][0][1].get<double>();
    double theirs_for_ours = -1e9;
    for (const auto& entry : ref["greedy_top5"][s]) {
      if (entry[0].get<int32_t>() == ours[s]) theirs_for_ours = entry[1].get<double>();
    }
    EXPECT_LT(best - theirs_for_ours, margin)
        << label << " step " << s << ": chose " << ours[s] << ", reference " << expected[s];
    std::cout << "[ note ] " << label << ": diverges at step " << s << " within reference margin "
              << best - theirs_for_ours << "\n";
    return;
  }
}

inline std::vector<float> to_floats(const nlohmann::json& j) {
  std::vector<float> v;
  if (j.is_array() && !j.empty() && j[0].is_array()) {
    for (const auto& row : j) {
      for (const auto& x : row) v.push_back(static_cast<float>(x.get<double>()));
    }
  } else {
    for (const auto& x : j) v.push_back(static_cast<float>(x.get<double>()));
  }
  return v;
}

// Largest |a - b| / (atol + rtol * |b|); <= 1 means "close".
inline double closeness(const std::vector<float>& a, const std::vector<float>& b, double atol,
                        double rtol, size_t* worst_index = nullptr) {
  EXPECT_EQ(a.size(), b.size());
  double worst = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    double r = std::fabs(double(a[i]) - b[i]) / (atol + rtol * std::fabs(double(b[i])));
    if (r > worst) {
      worst = r;
      if (worst_index) *worst_index = i;
    }
  }
  return worst;
}

// One request over positions 0..T-1 through `model`'s forward pass, as the engine runs it: a fresh
// paged KV cache whose block table runs in reverse (skipping the null block) so paging matters.
// Returns the logits of every position [T, vocab], flattened; `dump` receives named intermediates.
inline std::vector<float> forward_one_prompt(
    CausalLM& model, Backend& backend, const ModelConfig& config, const std::vector<int32_t>& ids,
    int block_size = 16, DType kv_dtype = DType::kF32,
    std::function<void(const std::string&, const Tensor&)> dump = nullptr) {
  const int64_t t = static_cast<int64_t>(ids.size());
  const int64_t num_blocks = (t + block_size - 1) / block_size + 2;
  std::vector<KVCacheLayer> caches;
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    std::vector<int64_t> shape = {num_blocks, config.num_key_value_heads, block_size, config.head_dim};
    caches.push_back({backend.alloc(kv_dtype, shape), backend.alloc(kv_dtype, shape), block_size});
  }
  ForwardBatch batch;
  batch.input_ids = ids;
  std::vector<int32_t> blocks;
  for (int64_t b = num_blocks - 1; b >= 1; --b) blocks.push_back(static_cast<int32_t>(b));
  for (int64_t p = 0; p < t; ++p) {
    batch.positions.push_back(static_cast<int32_t>(p));
    batch.slot_mapping.push_back(int64_t{blocks[p / block_size]} * block_size + p % block_size);
    batch.logits_indices.push_back(static_cast<int32_t>(p));
  }
  batch.query_start_loc = {0, static_cast<int32_t>(t)};
  batch.seq_lens = {static_cast<int32_t>(t)};
  batch.block_table = blocks;
  batch.max_blocks_per_req = static_cast<int64_t>(blocks.size());
  auto step = backend.prepare_step(batch);
  ForwardContext ctx{backend, *step, caches, std::move(dump)};
  Tensor hidden = model.forward(ctx);
  return backend.to_host(model.compute_logits(backend, hidden));
}

// Runs a model's forward pass over one prompt (positions 0..T-1, fresh paged KV cache) and keeps
// the named intermediates and the logits of every position.
class ModelHarness {
 public:
  ModelHarness(const std::string& gguf_path, cpu::MatmulPath path, int num_threads = 2)
      : file_(GgufFile::open(gguf_path)),
        config_(model_config_from_gguf(*file_)),
        backend_(num_threads, path) {
    GgufWeightSource weights(file_);
    model_ = create_model(config_, weights, backend_, CheckpointFormat::kGguf);
  }

  const ModelConfig& config() const { return config_; }

  // Returns logits [T, vocab] flattened; intermediates land in dumps().
  std::vector<float> forward(const std::vector<int32_t>& ids, int block_size = 16) {
    dumps_.clear();
    return forward_one_prompt(*model_, backend_, config_, ids, block_size, DType::kF32,
                              [this](const std::string& name, const Tensor& v) {
                                dumps_[name] = backend_.to_host(v);
                              });
  }

  const std::map<std::string, std::vector<float>>& dumps() const { return dumps_; }

 private:
  std::shared_ptr<GgufFile> file_;
  ModelConfig config_;
  cpu::CpuBackend backend_;
  std::unique_ptr<CausalLM> model_;
  std::map<std::string, std::vector<float>> dumps_;
};

inline std::vector<float> log_softmax_row(const float* logits, int64_t n) {
  double max_v = *std::max_element(logits, logits + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(logits[i] - max_v);
  double lse = std::log(sum) + max_v;
  std::vector<float> out(n);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(logits[i] - lse);
  return out;
}

// Greedy decoding of exactly max_tokens (no EOS stop), with `logprobs` per step when given.
inline SamplingParams greedy(int max_tokens, std::optional<int> logprobs = std::nullopt) {
  SamplingParams p;
  p.temperature = 0.0;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  p.logprobs = logprobs;
  return p;
}

}  // namespace cvllm::testing
