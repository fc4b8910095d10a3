// Launchers of the CUDA kernels: raw device pointers, sizes and a stream, never Tensors (the
// backend adapts). One .cu file per op family implements them; each launch is checked.
// Activations are f32; weights are bf16 on the device (dequantized once at load).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "tensor/dtype.h"

namespace cvllm::cuda {

using bf16 = __nv_bfloat16;

// ---- dequantize.cu --------------------------------------------------------------------------
// True for the storage types the dequantizer reads: F32, F16, BF16 and the GGUF block types the
// CPU reference covers (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K..Q6_K, Q8_K).
bool dequantize_supported(DType dtype);
// n elements (a whole number of blocks) of `dtype` at src -> dst. Element values are computed in
// f32 exactly as kernels/cpu/dequantize.cpp does (no fused multiply-add), then rounded.
void dequantize_to_bf16(DType dtype, const void* src, bf16* dst, int64_t n, cudaStream_t stream);
void dequantize_to_f32(DType dtype, const void* src, float* dst, int64_t n, cudaStream_t stream);
// y = bf16(x), round to nearest even.  x, y: [n]
void convert_f32_to_bf16(const float* x, bf16* y, int64_t n, cudaStream_t stream);

// ---- elementwise.cu -------------------------------------------------------------------------
// out[i, :] = f32(table[rows[i] + offset, :]).  table: [*, width] f32 or bf16; rows: [num_rows]
// (in range: checked by the caller on the host); out: [num_rows, width]
void gather_rows(const void* table, bool table_is_bf16, const int32_t* rows, int64_t num_rows,
                 int64_t width, float* out, cudaStream_t stream, int32_t offset = 0);
// With residual == nullptr: y = rms_norm(x) * (w + offset). Otherwise residual += x first and the
// norm reads the updated residual. y_bf16, when not null, also receives bf16(y) (the next linear
// layer's input, saving a conversion pass).  x, residual, y, y_bf16: [num_rows, n]; w: [n]
void rms_norm(const float* x, float* residual, const float* w, float* y, bf16* y_bf16,
              int64_t num_rows, int64_t n, float eps, float weight_offset, cudaStream_t stream);
// y = (x - mean) / sqrt(var + eps) * w + b (b may be null).  x, y: [num_rows, n]; w, b: [n]
void layer_norm(const float* x, const float* w, const float* b, float* y, int64_t num_rows,
                int64_t n, float eps, cudaStream_t stream);
// out = act(gate) * up, element-wise over n (out may alias gate or up); out_bf16, when not null,
// also receives bf16(out).
void silu_mul(const float* gate, const float* up, float* out, bf16* out_bf16, int64_t n,
              cudaStream_t stream);
void gelu_tanh_mul(const float* gate, const float* up, float* out, int64_t n, cudaStream_t stream);
// out = act(gate) * up (silu, else gelu_tanh) from bf16 gate and up, and out_bf16 = bf16(out).
// All [n].
void gated_bf16(const bf16* gate, const bf16* up, bool silu, float* out, bf16* out_bf16, int64_t n,
                cudaStream_t stream);
// out = relu(x) / gelu_tanh(x) (GPT-2's gelu_new), element-wise over n (out may alias x).
void relu(const float* x, float* out, int64_t n, cudaStream_t stream);
void gelu_tanh(const float* x, float* out, int64_t n, cudaStream_t stream);
// x *= factor; x = cap * tanh(x / cap), in place over n elements.
void scale(float* x, float factor, int64_t n, cudaStream_t stream);
void softcap(float* x, float cap, int64_t n, cudaStream_t stream);
// b += a over n elements.
void add(const float* a, float* b, int64_t n, cudaStream_t stream);
// y[r, :] += bias.  y: [num_rows, n]; bias: [n]
void add_bias(float* y, const float* bias, int64_t num_rows, int64_t n, cudaStream_t stream);

// ---- gemv.cu --------------------------------------------------------------------------------
// Decode-sized linear layers: y = x W^T for at most kGemvMaxTokens tokens, bandwidth-bound (one
// warp per weight row), for up to kGemvMaxOutputs weights sharing the input in one launch (q/k/v,
// gate/up). w[o]: [rows[o], k] bf16; x: [n, k] bf16; y[o]: [n, rows[o]] f32.
constexpr int64_t kGemvMaxTokens = 4;
constexpr int kGemvMaxOutputs = 4;
struct GemvOutputs {
  int count = 0;
  const bf16* w[kGemvMaxOutputs] = {};
  float* y[kGemvMaxOutputs] = {};
  int64_t rows[kGemvMaxOutputs] = {};
};
// True when gemv_bf16 takes these operands: 1 <= n <= kGemvMaxTokens, k % 8 == 0, w and x 16-byte
// aligned.
bool gemv_applies(const void* w, const void* x, int64_t n, int64_t k);
void gemv_bf16(const GemvOutputs& outs, const bf16* x, int64_t n, int64_t k, cudaStream_t stream);
// out = act(x w_gate^T) * (x w_up^T) in one pass (gemv_applies must hold for both weights), and
// out_bf16 = bf16(out).  w_gate, w_up: [rows, k]; x: [n, k]; out, out_bf16: [n, rows]
enum class GatedActivationKind { kSilu, kGeluTanh };
void gemv_gated_bf16(const bf16* w_gate, const bf16* w_up, GatedActivationKind act, const bf16* x,
                     int64_t n, int64_t rows, int64_t k, float* out, bf16* out_bf16,
                     cudaStream_t stream);

// ---- sampling.cu ----------------------------------------------------------------------------
// One row to sample (kernels/backend.h DeviceSampleRow, as the kernel reads it).
struct SampleRowParams {
  int32_t row = 0;
  int32_t greedy = 0;
  float temperature = 1.0f;
  float min_p = 0.0f;
  double u = 0.0;
  int32_t top_k = 0;  // <= 0 or >= vocab: off
  double top_p = 1.0;
  // Logits processors (kernels/backend.h DeviceSampleRow), as ranges of the `ids` buffer (and, for
  // the biases' values, of `values`): allowed, banned, bias ids, seen ids, seen output counts.
  int32_t has_processors = 0;
  int32_t allowed_begin = 0, allowed_count = 0;
  int32_t banned_begin = 0, banned_count = 0;
  int32_t bias_begin = 0, bias_value_begin = 0, bias_count = 0;
  int32_t seen_begin = 0, seen_counts_begin = 0, seen_count = 0;
  float repetition_penalty = 1.0f, frequency_penalty = 0.0f, presence_penalty = 0.0f;
};
// Applies each row's logits processors to its logits row in place (rows with none are skipped).
void apply_logits_processors(float* logits, int64_t vocab, const SampleRowParams* params,
                             int64_t num_rows, const int32_t* ids, const float* values,
                             cudaStream_t stream);
// Rows with top-k or top-p sort their candidates on chip: at most this many may remain above the
// threshold that top-k/top-p imply, else the row's output is -1 (the caller samples it on the host).
constexpr int kMaxDeviceCandidates = 2048;
// out[i] = the token drawn from logits row params[i].row, or -1 (see kMaxDeviceCandidates).
// logits: [*, vocab] f32; params, out: [num_rows] (device)
// any_candidates: some row uses top-k or top-p.
void sample_rows(const float* logits, int64_t vocab, const SampleRowParams* params,
                 int64_t num_rows, bool any_candidates, int32_t* out, cudaStream_t stream);
// Requested logprobs of drawn tokens: row r of `raw` ([num_rows, vocab], the logits before any
// processor) and the token tokens[row_token[r]] give sampled_logprob[r], sampled_rank[r] (1-based)
// and the k best (top_ids, top_logprobs: [num_rows, k]), as Sampler::gather_logprobs computes them.
constexpr int kMaxDeviceLogprobs = 20;  // vLLM's default max_logprobs
void gather_logprobs(const float* raw, int64_t vocab, int64_t num_rows, const int32_t* row_token,
                     const int32_t* tokens, int k, float* sampled_logprob, int32_t* sampled_rank,
                     int32_t* top_ids, float* top_logprobs, cudaStream_t stream);
// Async scheduling: the next step reads the ids this step drew without the host knowing them.
// input_ids[row[i]] = drawn[draw[i]] for i < count (an undrawn -1 becomes 0: never read as an id
// out of range; the runner never feeds rows that can come back undrawn).
constexpr int kMaxFedTokens = 128;
struct FedTokens {
  int32_t count = 0;
  int32_t row[kMaxFedTokens];
  int32_t draw[kMaxFedTokens];
};
void feed_tokens(int32_t* input_ids, const int32_t* drawn, const FedTokens& fed,
                 cudaStream_t stream);

// ---- attention.cu ---------------------------------------------------------------------------
// KV cache layout (per layer, K and V alike): [num_blocks, num_kv_heads, block_size, head_size],
// element type f32 or bf16. Token slot s lives in block s / block_size at offset s % block_size.
struct PagedAttentionArgs {
  int64_t num_tokens = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_size = 0;
  int64_t block_size = 16;
  int64_t max_blocks_per_req = 0;
  float scale = 1.0f;
  float logit_softcap = 0.0f;   // > 0: score = softcap * tanh(score / softcap)
  int64_t sliding_window = -1;  // > 0: keys at positions > pos - window only
  bool cache_is_bf16 = false;
};

// k, v: [T, num_kv_heads, head_size] f32; slot_mapping: [T] (-1 = skip)
void write_kv_cache(const float* k, const float* v, void* k_cache, void* v_cache,
                    const int64_t* slot_mapping, const PagedAttentionArgs& args,
                    cudaStream_t stream);
// Rotates the first rot_dim dimensions of each head in place.  q: [T, num_heads, head_size];
// k: [T, num_kv_heads, head_size]; positions: [T]; inv_freq: [rot_dim / 2] (device)
void rotary(float* q, float* k, const int32_t* positions, int64_t num_tokens, int64_t num_heads,
            int64_t num_kv_heads, int64_t head_size, int64_t rot_dim, const float* inv_freq,
            bool neox, float mscale, cudaStream_t stream);
// rotary() on q and k, then write_kv_cache(), in one launch with the same results (the same
// kernel; k's threads also write their rows to the cache).
struct RopeArgs {
  const int32_t* positions = nullptr;  // [T]
  const float* inv_freq = nullptr;     // [rot_dim / 2] (device)
  int64_t rot_dim = 0;
  bool neox = true;
  float mscale = 1.0f;
};
void rope_write_kv_cache(float* q, float* k, const float* v, void* k_cache, void* v_cache,
                         const int64_t* slot_mapping, const RopeArgs& rope,
                         const PagedAttentionArgs& args, cudaStream_t stream);
constexpr int64_t kMaxAttentionHeadSize = 512;
// Split-KV: a token's keys are cut at multiples of a piece size and each piece is one work item
// (its own thread blocks), merged afterwards in order. Tokens of requests with fewer than
// kFlashMinQueries new tokens (decode) use kDecodeSplitKeys, so even one sequence keeps many
// multiprocessors busy; longer chunks use kSplitKeys (fewer partial results to keep). The cut
// depends only on the token's position and its own request's query length, never on the batch,
// so results stay batch invariant.
constexpr int64_t kSplitKeys = 1024;
constexpr int64_t kDecodeSplitKeys = 256;

// Work items of one step: item w attends over keys [key_begin[w], key_end[w]] of token
// work_token[w];
// token t's items are [token_first_work[t], token_first_work[t + 1]) (none for tokens that
// flash_prefill_attention handles).
struct AttentionWork {
  int64_t num_items = 0;
  const int32_t* work_token = nullptr;        // [num_items]
  const int32_t* key_begin = nullptr;         // [num_items] first key position of the piece
  const int32_t* key_end = nullptr;           // [num_items] last key position of the piece
  const int32_t* token_first_work = nullptr;  // [num_tokens + 1]
  bool has_split = false;  // some token has several items (then the scratch below is needed)
  // Scratch for tokens of several pieces (unused when no token has several):
  float* partial_out = nullptr;  // [num_items, num_heads, head_size] unnormalized sums
  float* partial_ml = nullptr;   // [num_items, num_heads, 2] running max and sum of exponentials
};

// out[t, h, :] = softmax(scale * q[t, h, :] . K^T) V over the keys of t's request at positions
// [0, pos(t)] (and inside the window), pos(t) = seq_len - query_len + (t - query_start).
// q, out: [T, num_heads, head_size]; token_to_req: [T]; query_start_loc: [num_reqs + 1];
// seq_lens: [num_reqs]; block_table: [num_reqs, max_blocks_per_req]. The caller checks
// 0 < head_size <= kMaxAttentionHeadSize and num_heads % num_kv_heads == 0.
void paged_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                     const int32_t* token_to_req, const int32_t* query_start_loc,
                     const int32_t* seq_lens, const int32_t* block_table,
                     const AttentionWork& work, const PagedAttentionArgs& args,
                     cudaStream_t stream);

// ---- decode_attention.cu --------------------------------------------------------------------
// The same result as paged_attention for every token outside prefill tiles, faster: one block per
// (token, piece, KV head) serving the KV head's whole query-head group, pieces merged in the same
// launch. Takes a bf16 cache, head sizes 16/32/64/128/256 and at most kDecodeMaxGroup query heads per KV
// head (decode_attention_supports).
constexpr int kDecodeMaxGroup = 8;
// A token attends over n keys (its window, or positions [0, pos]) in pieces of
// decode_piece_keys(n) keys: multiples of 64, at most kMaxDecodePieces pieces. Depends on n only,
// so results are batch invariant.
constexpr int64_t kMaxDecodePieces = 16;
__host__ __device__ inline int64_t decode_piece_keys(int64_t n) {
  const int64_t unit = 64 * kMaxDecodePieces;
  return 64 * ((n + unit - 1) / unit > 0 ? (n + unit - 1) / unit : 1);
}
__host__ __device__ inline int64_t decode_pieces(int64_t n) {
  const int64_t p = decode_piece_keys(n);
  return (n + p - 1) / p;
}
// The most pieces of any n' <= n: a token whose layer has a sliding window attends over fewer keys
// than its position, and fewer keys can mean more pieces (1,024 keys take 16 of 64, 1,025 take 9
// of 128), so a grid sized by the position alone could miss some.
__host__ __device__ inline int64_t decode_max_pieces(int64_t n) {
  const int64_t pieces = (n + 63) / 64;
  return pieces < kMaxDecodePieces ? pieces : kMaxDecodePieces;
}
struct DecodeAttentionWork {
  int64_t max_pieces = 0;  // the most pieces of any token: decode_max_pieces of the latest position
  // Blocks per (token, KV head), each looping over pieces i, i + stride, ...; <= 0: max_pieces
  // (one piece per block).
  int64_t piece_stride = 0;
  // The tokens to attend for (the others are in prefill tiles); null: every token of the step.
  const int32_t* tokens = nullptr;  // [num_listed]
  int64_t num_listed = 0;
  // Scratch when max_pieces > 1, per attended token (listed or all):
  float* partial_out = nullptr;  // [tokens, max_pieces, num_heads, head_size]
  float* partial_ml = nullptr;   // [tokens, max_pieces, num_heads, 2]
  int* counters = nullptr;       // [tokens, num_kv_heads], zero before and after each launch
  // Small batches merge a token's pieces within a thread-block cluster (no scratch used); false
  // keeps every launch on the global merge (A/B runs and tests: both give the same bits).
  bool allow_cluster = true;
};
bool decode_attention_supports(const PagedAttentionArgs& args);
// How many decode_attention launches took the cluster merge so far in this process (tests check
// that the path they compare actually ran).
int64_t decode_attention_cluster_launches();
// out (and out_bf16 when not null) for the tokens taken: q, out: [T, num_heads, head_size] f32.
void decode_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                      bf16* out_bf16, const int32_t* token_to_req, const int32_t* query_start_loc,
                      const int32_t* seq_lens, const int32_t* block_table,
                      const DecodeAttentionWork& work, const PagedAttentionArgs& args,
                      cudaStream_t stream);

// ---- flash_attention.cu ---------------------------------------------------------------------
// Prefill chunks on tensor cores: requests with at least kFlashMinQueries new tokens are cut into
// tiles of kFlashTileQueries consecutive tokens; tile i covers tokens [tile_first_token[i],
// min(tile_first_token[i] + kFlashTileQueries, end of request tile_req[i])).
constexpr int64_t kFlashMinQueries = 16;
constexpr int64_t kFlashTileQueries = 128;
struct FlashTiles {
  int64_t num_tiles = 0;
  const int32_t* tile_req = nullptr;          // [num_tiles]
  const int32_t* tile_first_token = nullptr;  // [num_tiles]
};
// True when the cache is bf16 and head_size is 64, 128 or 256.
bool flash_prefill_supports(const PagedAttentionArgs& args);
// The same result as paged_attention (cuda_ops.h) for the tiles' tokens, with bf16 queries and
// probabilities.  q, out: [T, num_heads, head_size]; caches bf16. flash_attention.cu (WMMA,
// accumulator in shared memory) takes every supported head size;
// flash_attention_mma.cu (mma.sync, accumulators in registers, faster) takes 64 and 128.
void flash_prefill_attention(const float* q, const void* k_cache, const void* v_cache, float* out,
                             const int32_t* query_start_loc, const int32_t* seq_lens,
                             const int32_t* block_table, const FlashTiles& tiles,
                             const PagedAttentionArgs& args, cudaStream_t stream);
bool flash_prefill_mma_supports(int64_t head_size);
// out_bf16, when not null, also receives bf16(out) for the tiles' tokens.
void flash_prefill_attention_mma(const float* q, const void* k_cache, const void* v_cache,
                                 float* out, bf16* out_bf16, const int32_t* query_start_loc,
                                 const int32_t* seq_lens, const int32_t* block_table,
                                 const FlashTiles& tiles, const PagedAttentionArgs& args,
                                 cudaStream_t stream);

}  // namespace cvllm::cuda
