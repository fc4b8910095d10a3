// Microbenchmark of one batch-1 decode step of a Llama-3-8B-shaped model on the GPU, built from
// the CUDA launchers alone (no engine, no weights file): every layer's kernels in the order the
// engine launches them, recorded into a CUDA graph and replayed, as `cvllm bench latency` runs a
// decode step. Variants leave kernels out or run one kind alone, so the time a kernel adds to the
// step (overlap with programmatic dependent launch included) is a difference of two rows, and
// each matrix-vector kind's bandwidth is its bytes over its time. Prints one JSON object per line.
//   bench_cuda_decode_step [--layers 32] [--context 576] [--replays 20] [--variant NAME]
// (CVLLM_CUDA_PDL=0 for plain launches; CVLLM_CUDA_DECODE_CLUSTER=0 for attention's global merge.)
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_ops.h"

namespace {

using namespace cvllm::cuda;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

template <typename T>
T* device_array(size_t n, int byte = 0) {
  void* p = nullptr;
  check(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
  check(cudaMemset(p, byte, n * sizeof(T)), "cudaMemset");
  return static_cast<T*>(p);
}

template <typename T>
T* device_copy(const std::vector<T>& v) {
  T* p = device_array<T>(v.size());
  check(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return p;
}

// Llama-3-8B.
constexpr int64_t kHidden = 4096, kHeads = 32, kKvHeads = 8, kHeadSize = 128, kFfn = 14336;
constexpr int64_t kVocab = 128256, kBlockSize = 16, kMaxModelLen = 4096;

struct Layer {
  bf16 *wq, *wk, *wv, *wo, *wg, *wu, *wd;
  bf16 *k_cache, *v_cache;
};

struct Step {
  std::vector<Layer> layers;
  bf16* lm_head = nullptr;
  // Activations (one token).
  bf16 *x_bf16, *attn_bf16, *act_bf16;
  float *q, *k, *v, *attn, *o, *residual, *norm_w, *y, *act, *down, *logits;
  // Step metadata and scratch.
  int32_t *token_to_req, *query_start_loc, *seq_lens, *block_table, *positions;
  int64_t* slot_mapping;
  float *inv_freq, *partial_out, *partial_ml;
  int* counters;
  PagedAttentionArgs args;
  DecodeAttentionWork work;
  RopeArgs rope;
};

// Weights are a byte pattern (a small bf16 value); the speed of these kernels does not depend on
// the values.
Step make_step(int layers, int64_t context) {
  Step s;
  const int64_t blocks_per_req = kMaxModelLen / kBlockSize;
  const int64_t cache_blocks = (context + kBlockSize - 1) / kBlockSize + 1;  // + the null block
  const size_t cache_elems = cache_blocks * kKvHeads * kBlockSize * kHeadSize;
  for (int l = 0; l < layers; ++l) {
    Layer L;
    L.wq = device_array<bf16>(kHeads * kHeadSize * kHidden, 0x3c);
    L.wk = device_array<bf16>(kKvHeads * kHeadSize * kHidden, 0x3c);
    L.wv = device_array<bf16>(kKvHeads * kHeadSize * kHidden, 0x3c);
    L.wo = device_array<bf16>(kHidden * kHidden, 0x3c);
    L.wg = device_array<bf16>(kFfn * kHidden, 0x3c);
    L.wu = device_array<bf16>(kFfn * kHidden, 0x3c);
    L.wd = device_array<bf16>(kHidden * kFfn, 0x3c);
    L.k_cache = device_array<bf16>(cache_elems, 0x3c);
    L.v_cache = device_array<bf16>(cache_elems, 0x3c);
    s.layers.push_back(L);
  }
  s.lm_head = device_array<bf16>(kVocab * kHidden, 0x3c);
  s.x_bf16 = device_array<bf16>(kHidden, 0x3c);
  s.attn_bf16 = device_array<bf16>(kHidden);
  s.act_bf16 = device_array<bf16>(kFfn);
  s.q = device_array<float>(kHeads * kHeadSize);
  s.k = device_array<float>(kKvHeads * kHeadSize);
  s.v = device_array<float>(kKvHeads * kHeadSize);
  s.attn = device_array<float>(kHidden);
  s.o = device_array<float>(kHidden);
  s.residual = device_array<float>(kHidden);
  s.norm_w = device_copy(std::vector<float>(kHidden, 1.0f));
  s.y = device_array<float>(kHidden);
  s.act = device_array<float>(kFfn);
  s.down = device_array<float>(kHidden);
  s.logits = device_array<float>(kVocab);

  std::vector<int32_t> table(blocks_per_req, 0);
  for (int64_t b = 0; b + 1 < cache_blocks; ++b) table[b] = static_cast<int32_t>(b + 1);
  const int64_t pos = context - 1;
  s.token_to_req = device_copy(std::vector<int32_t>{0});
  s.query_start_loc = device_copy(std::vector<int32_t>{0, 1});
  s.seq_lens = device_copy(std::vector<int32_t>{static_cast<int32_t>(context)});
  s.block_table = device_copy(table);
  s.positions = device_copy(std::vector<int32_t>{static_cast<int32_t>(pos)});
  s.slot_mapping = device_copy(std::vector<int64_t>{table[pos / kBlockSize] * kBlockSize + pos % kBlockSize});
  std::vector<float> inv_freq(kHeadSize / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = std::pow(500000.0f, -2.0f * i / kHeadSize);
  s.inv_freq = device_copy(inv_freq);

  s.args.num_tokens = 1;
  s.args.num_heads = kHeads;
  s.args.num_kv_heads = kKvHeads;
  s.args.head_size = kHeadSize;
  s.args.block_size = kBlockSize;
  s.args.max_blocks_per_req = blocks_per_req;
  s.args.scale = 1.0f / std::sqrt(static_cast<float>(kHeadSize));
  s.args.cache_is_bf16 = true;
  // As a recorded step of one token: pieces bounded by the block table, one block each.
  s.work.max_pieces = decode_max_pieces(blocks_per_req * kBlockSize);
  s.work.piece_stride = s.work.max_pieces;
  s.partial_out = device_array<float>(s.work.max_pieces * kHeads * kHeadSize);
  s.partial_ml = device_array<float>(s.work.max_pieces * kHeads * 2);
  s.counters = device_array<int>(kKvHeads);
  s.work.partial_out = s.partial_out;
  s.work.partial_ml = s.partial_ml;
  s.work.counters = s.counters;
  const char* cluster_env = std::getenv("CVLLM_CUDA_DECODE_CLUSTER");
  s.work.allow_cluster = cluster_env == nullptr || std::string(cluster_env) != "0";
  s.rope.positions = s.positions;
  s.rope.inv_freq = s.inv_freq;
  s.rope.rot_dim = kHeadSize;
  return s;
}

// Which kernels a variant launches.
struct Parts {
  bool qkv = true, rope = true, attention = true, o = true, norms = true, mlp_gated = true,
       down = true, lm_head = true;
};

// A product with one output: y = x w^T, w: [rows, k].
void gemv_one(const bf16* w, float* y, int64_t rows, const bf16* x, int64_t k, cudaStream_t st) {
  GemvOutputs g;
  g.count = 1;
  g.w[0] = w, g.y[0] = y, g.rows[0] = rows;
  gemv_bf16(g, x, 1, k, st);
}

void launch_step(const Step& s, const Parts& p, cudaStream_t st) {
  for (const Layer& L : s.layers) {
    if (p.qkv) {
      GemvOutputs g;
      g.count = 3;
      g.w[0] = L.wq, g.y[0] = s.q, g.rows[0] = kHeads * kHeadSize;
      g.w[1] = L.wk, g.y[1] = s.k, g.rows[1] = kKvHeads * kHeadSize;
      g.w[2] = L.wv, g.y[2] = s.v, g.rows[2] = kKvHeads * kHeadSize;
      gemv_bf16(g, s.x_bf16, 1, kHidden, st);
    }
    if (p.rope) {
      rope_write_kv_cache(s.q, s.k, s.v, L.k_cache, L.v_cache, s.slot_mapping, s.rope, s.args, st);
    }
    if (p.attention) {
      decode_attention(s.q, L.k_cache, L.v_cache, s.attn, s.attn_bf16, s.token_to_req,
                       s.query_start_loc, s.seq_lens, s.block_table, s.work, s.args, st);
    }
    if (p.o) gemv_one(L.wo, s.o, kHidden, s.attn_bf16, kHidden, st);
    if (p.norms) rms_norm(s.o, s.residual, s.norm_w, s.y, s.x_bf16, 1, kHidden, 1e-5f, 0.0f, st);
    if (p.mlp_gated) {
      gemv_gated_bf16(L.wg, L.wu, GatedActivationKind::kSilu, s.x_bf16, 1, kFfn, kHidden, s.act,
                      s.act_bf16, st);
    }
    if (p.down) gemv_one(L.wd, s.down, kHidden, s.act_bf16, kFfn, st);
    if (p.norms) rms_norm(s.down, s.residual, s.norm_w, s.y, s.x_bf16, 1, kHidden, 1e-5f, 0.0f, st);
  }
  if (p.norms) rms_norm(s.residual, nullptr, s.norm_w, s.y, s.x_bf16, 1, kHidden, 1e-5f, 0.0f, st);
  if (p.lm_head) gemv_one(s.lm_head, s.logits, kVocab, s.x_bf16, kHidden, st);
}

double weight_bytes(const Parts& p, int layers) {
  double per_layer = 0;
  if (p.qkv) per_layer += (kHeads + 2 * kKvHeads) * kHeadSize * kHidden * 2.0;
  if (p.o) per_layer += kHidden * kHidden * 2.0;
  if (p.mlp_gated) per_layer += 2.0 * kFfn * kHidden * 2.0;
  if (p.down) per_layer += kHidden * kFfn * 2.0;
  return per_layer * layers + (p.lm_head ? kVocab * kHidden * 2.0 : 0.0);
}

// Records the variant into a graph and returns microseconds per replay.
double time_variant(const Step& s, const Parts& p, int replays, cudaStream_t st) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  check(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed), "begin capture");
  launch_step(s, p, st);
  check(cudaStreamEndCapture(st, &graph), "end capture");
  check(cudaGraphInstantiate(&exec, graph, 0), "instantiate");
  for (int i = 0; i < 3; ++i) check(cudaGraphLaunch(exec, st), "warm-up replay");
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, st);
  for (int i = 0; i < replays; ++i) check(cudaGraphLaunch(exec, st), "replay");
  cudaEventRecord(stop, st);
  check(cudaEventSynchronize(stop), "replays");
  float ms = 0;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  return ms * 1000.0 / replays;
}

}  // namespace

int main(int argc, char** argv) {
  int layers = 32, replays = 20;
  int64_t context = 576;
  std::string only_variant;  // empty: all
  bool bad_flag = argc % 2 == 0;  // flags come in pairs
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--layers")) layers = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--context")) context = std::atoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--replays")) replays = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--variant")) only_variant = argv[i + 1];
    else bad_flag = true;
  }
  if (bad_flag || layers < 1 || context < 1 || context > kMaxModelLen || replays < 1) {
    std::fprintf(stderr, "usage: bench_cuda_decode_step [--layers N] [--context 1..%lld] [--replays N] [--variant NAME]\n",
                 static_cast<long long>(kMaxModelLen));
    return 2;
  }
  const Parts full;
  const auto without = [&](bool Parts::*member) {
    Parts p;
    p.*member = false;
    return p;
  };
  const auto only = [&](std::initializer_list<bool Parts::*> members) {
    Parts p{false, false, false, false, false, false, false, false};
    for (auto m : members) p.*m = true;
    return p;
  };
  Parts gemvs = full;
  gemvs.rope = gemvs.attention = gemvs.norms = false;
  const std::vector<std::pair<std::string, Parts>> variants = {
      {"full step", full},
      {"without rope+kv write", without(&Parts::rope)},
      {"without attention", without(&Parts::attention)},
      {"without rms norms", without(&Parts::norms)},
      {"matrix-vector kernels only", gemvs},
      {"qkv only", only({&Parts::qkv})},
      {"o only", only({&Parts::o})},
      {"gate+up only", only({&Parts::mlp_gated})},
      {"down only", only({&Parts::down})},
      {"lm_head only", only({&Parts::lm_head})},
      {"rope+attention only", only({&Parts::rope, &Parts::attention})},
      {"rms norms only", only({&Parts::norms})},
      {"full step (again)", full},
  };
  if (!only_variant.empty() &&
      std::none_of(variants.begin(), variants.end(), [&](const auto& v) { return v.first == only_variant; })) {
    std::fprintf(stderr, "no variant named \"%s\"\n", only_variant.c_str());
    return 2;
  }
  Step s = make_step(layers, context);  // ~15 GB of weights on the GPU
  cudaStream_t st;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
  for (const auto& [name, parts] : variants) {
    if (!only_variant.empty() && name != only_variant) continue;
    const double us = time_variant(s, parts, replays, st);
    const double bytes = weight_bytes(parts, layers);
    std::printf("{\"variant\": \"%s\", \"layers\": %d, \"context\": %lld, \"us_per_step\": %.1f, "
                "\"weight_gb\": %.3f, \"weight_tb_per_s\": %.3f, \"tokens_per_s\": %.1f}\n",
                name.c_str(), layers, static_cast<long long>(context), us, bytes / 1e9,
                bytes / us / 1e6, 1e6 / us);
    std::fflush(stdout);
  }
  return 0;
}
