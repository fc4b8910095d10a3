#include "kernels/cuda/cuda_backend.h"

#include <cuda_runtime.h>
#include <malloc.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels/cuda/cuda_allocator.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_util.h"
#include "kernels/cuda/gemm.h"
#include "util/error.h"

namespace cvllm::cuda {

// Device copies of one step's metadata, all in one allocation (one upload per step).
class CudaStepMetadata : public StepMetadata {
 public:
  std::shared_ptr<void> memory;
  const int32_t* input_ids = nullptr;        // [num_tokens]
  const int32_t* positions = nullptr;        // [num_tokens]
  const int64_t* slot_mapping = nullptr;     // [num_tokens]
  const int32_t* query_start_loc = nullptr;  // [num_reqs + 1]
  const int32_t* seq_lens = nullptr;         // [num_reqs]
  const int32_t* block_table = nullptr;      // [num_reqs, max_blocks_per_req]
  const int32_t* token_to_req = nullptr;     // [num_tokens] request index of each token
  // Attention work items (split-KV pieces, see cuda_ops.h AttentionWork) of every token (when
  // all run on the CUDA-core kernel), and of the tokens outside flash tiles (when those run on
  // tensor cores).
  struct WorkItems {
    int64_t num_items = 0;
    bool has_split = false;
    const int32_t* token = nullptr;  // [num_items]
    const int32_t* key_begin = nullptr;  // [num_items]
    const int32_t* key_end = nullptr;    // [num_items]
    const int32_t* first = nullptr;  // [num_tokens + 1]
  };
  WorkItems all_work, rest_work;
  FlashTiles flash_tiles;
  // decode_attention's grid: the most pieces of any token (all tokens / those outside flash tiles).
  int64_t decode_pieces_all = 0, decode_pieces_rest = 0;
  int64_t num_rest_tokens = 0;  // tokens outside flash tiles
  const int32_t* rest_tokens = nullptr;  // [num_rest_tokens] their indices
  // A recorded decode step (CudaBackend::capture_forward): decode_attention takes every token,
  // its pieces bounded by the block table's width; no work lists are built.
  bool fixed_shape = false;
  size_t bytes = 0;  // of `memory`
};

// One array of the step's device buffer.
struct StepPart {
  const void* src;
  size_t bytes;
  size_t offset = 0;
};

namespace {

// Host-side lists of attention work items (cuda_ops.h AttentionWork).
struct WorkList {
  std::vector<int32_t> token, key_begin, key_end, first = {0};
  bool has_split = false;
  // Token t at position pos: pos / piece + 1 pieces of its keys [0, pos] (none when skipped).
  void add(int32_t t, int64_t pos, int64_t piece, bool skip) {
    if (!skip) {
      for (int64_t begin = 0; begin <= pos; begin += piece) {
        token.push_back(t);
        key_begin.push_back(static_cast<int32_t>(begin));
        key_end.push_back(static_cast<int32_t>(std::min(pos, begin + piece - 1)));
      }
      has_split = has_split || pos >= piece;
    }
    first.push_back(static_cast<int32_t>(token.size()));
  }
};

const CudaStepMetadata& cuda_step(const StepMetadata& step) {
  const auto* s = dynamic_cast<const CudaStepMetadata*>(&step);
  CVLLM_CHECK(s != nullptr, "step metadata was not prepared by the CUDA backend");
  return *s;
}

// Rows of a row-major tensor: every dimension but the last (0 for an empty tensor).
int64_t rows_of(const Tensor& t) {
  int64_t rows = 1;
  for (int i = 0; i + 1 < t.ndim(); ++i) rows *= t.dim(i);
  return t.ndim() == 0 ? 1 : rows;
}

}  // namespace

void check_device(const Tensor& t, const char* what) {
  CVLLM_CHECK(t.device() == Device::kCuda, what, " must be a CUDA tensor, got host ", t.describe());
}

void check_f32(const Tensor& t, const char* what) {
  check_device(t, what);
  CVLLM_CHECK(t.dtype() == DType::kF32, what, " must be f32, got ", t.describe());
}

bool cuda_device_available() {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return count > 0;
}

CudaBackend::CudaBackend(int device_index, int num_host_threads,
                         std::optional<bool> batch_invariant_gemm)
    : device_index_(device_index), pool_(num_host_threads) {
  // Host buffers of [num_rows, vocab_size] logits are allocated and freed every step (to_host's
  // result and the runner's copies): above glibc's mmap threshold each one is a fresh mapping whose
  // pages fault in again (slow in a VM), which cost ~0.4 ms per sequence per step at batch 128 with a
  // 49k vocabulary. Keeping such blocks in the heap lets the next step reuse them.
  // CVLLM_CUDA_KEEP_MALLOC=1 leaves glibc's defaults alone (for comparison).
  const char* keep_malloc = std::getenv("CVLLM_CUDA_KEEP_MALLOC");
  if (keep_malloc == nullptr || std::string(keep_malloc) != "1") {
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1024 << 20);
  }
  if (!batch_invariant_gemm) {
    const char* env = std::getenv("CVLLM_CUDA_BATCH_INVARIANT");
    batch_invariant_gemm = env != nullptr && std::string(env) == "1";
  }
  CVLLM_CHECK(cuda_device_available(), "no CUDA device is available");
  CVLLM_CUDA_CHECK(cudaSetDevice(device_index));
  cudaDeviceProp prop{};
  CVLLM_CUDA_CHECK(cudaGetDeviceProperties(&prop, device_index));
  device_name_ = cat(prop.name, ", sm_", prop.major, prop.minor);
  cudaStream_t stream = nullptr;
  // A blocking stream: synchronous copies on the legacy default stream stay ordered with it.
  CVLLM_CUDA_CHECK(cudaStreamCreate(&stream));
  stream_ = stream;
  cudaEvent_t event = nullptr;
  CVLLM_CUDA_CHECK(cudaEventCreateWithFlags(&event, cudaEventDisableTiming));
  staging_done_ = event;
  allocator_ = DeviceAllocator::create();
  graph_pool_ = DeviceAllocator::create(/*graph_pool=*/true);
  gemm_ = std::make_unique<CublasLtGemm>(allocator_, stream, *batch_invariant_gemm);
  batch_invariant_gemm_ = *batch_invariant_gemm;
  // Decode-sized products run as matrix-vector kernels, unless every batch size must share one
  // GEMM algorithm; CVLLM_CUDA_GEMV=0 turns them off (for A/B runs).
  const char* gemv_env = std::getenv("CVLLM_CUDA_GEMV");
  use_gemv_ = !batch_invariant_gemm_ && (gemv_env == nullptr || std::string(gemv_env) != "0");
  // Prefill chunks on tensor cores; CVLLM_CUDA_FLASH=0 keeps every token on the CUDA-core kernel.
  const char* flash_env = std::getenv("CVLLM_CUDA_FLASH");
  use_flash_ = flash_env == nullptr || std::string(flash_env) != "0";
  // Head sizes 64 and 128 take the mma.sync kernel; CVLLM_CUDA_FLASH_WMMA=1 keeps them on the
  // WMMA one (A/B runs).
  const char* wmma_env = std::getenv("CVLLM_CUDA_FLASH_WMMA");
  use_flash_mma_ = wmma_env == nullptr || std::string(wmma_env) != "1";
  // Plain draws on the GPU; CVLLM_CUDA_SAMPLING=0 sends every logits row to the host sampler.
  const char* sampling_env = std::getenv("CVLLM_CUDA_SAMPLING");
  sample_on_device_ = sampling_env == nullptr || std::string(sampling_env) != "0";
  // Decode tokens on decode_attention; CVLLM_CUDA_DECODE_ATTENTION=0 keeps them on paged_attention.
  const char* decode_env = std::getenv("CVLLM_CUDA_DECODE_ATTENTION");
  use_decode_attention_ = decode_env == nullptr || std::string(decode_env) != "0";
  // Decode steps replay CUDA graphs; CVLLM_CUDA_GRAPHS=0 keeps them eager (as enforce_eager).
  const char* graphs_env = std::getenv("CVLLM_CUDA_GRAPHS");
  use_graphs_ = graphs_env == nullptr || std::string(graphs_env) != "0";
  if (const char* stride_env = std::getenv("CVLLM_CUDA_DECODE_STRIDE")) {
    decode_piece_stride_ = std::max(0, std::atoi(stride_env));
  }
  // Small decode batches merge attention pieces within thread-block clusters;
  // CVLLM_CUDA_DECODE_CLUSTER=0 keeps the global merge (A/B runs; the same bits).
  const char* cluster_env = std::getenv("CVLLM_CUDA_DECODE_CLUSTER");
  decode_cluster_ = cluster_env == nullptr || std::string(cluster_env) != "0";
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  gemm_.reset();
  if (staging_ != nullptr) cudaFreeHost(staging_);
  if (readback_ != nullptr) cudaFreeHost(readback_);
  if (staging_done_ != nullptr) cudaEventDestroy(staging_done_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
}

std::string CudaBackend::name() const {
  return cat("cuda (", device_name_, "; bf16 weights, cuBLASLt GEMMs",
             use_gemv_ ? " + matrix-vector kernels for decode" : "",
             batch_invariant_gemm_ ? " (batch-invariant)" : "", ", f32 activations)");
}

Tensor CudaBackend::alloc_uninitialized(DType dtype, std::vector<int64_t> shape) {
  const size_t bytes = Tensor::view(static_cast<void*>(nullptr), dtype, shape).nbytes();
  std::shared_ptr<void> mem = memory().allocate(bytes);
  void* ptr = mem.get();
  Tensor t = Tensor::adopt(ptr, dtype, std::move(shape), Device::kCuda, std::move(mem));
  wrote(t);  // recycled memory: whatever the scratch copied from it is gone
  return t;
}

void CudaBackend::wrote(const Tensor& t) {
  if (bf16_source_ == nullptr || t.nbytes() == 0) return;
  const auto* begin = static_cast<const uint8_t*>(t.data());
  const auto* source = static_cast<const uint8_t*>(bf16_source_);
  const size_t source_bytes = static_cast<size_t>(bf16_numel_) * sizeof(float);
  if (begin < source + source_bytes && source < begin + t.nbytes()) bf16_source_ = nullptr;
}

bf16* CudaBackend::bf16_scratch(int64_t n) {
  bf16_source_ = nullptr;
  if (x_bf16_.numel() < n) {
    x_bf16_ = Tensor();
    x_bf16_ = alloc_uninitialized(DType::kBF16, {n});
  }
  return x_bf16_.data_as<bf16>();
}

Tensor CudaBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  Tensor t = alloc_uninitialized(dtype, std::move(shape));
  if (t.nbytes() > 0) CVLLM_CUDA_CHECK(cudaMemsetAsync(t.data(), 0, t.nbytes(), stream_));
  return t;
}

void CudaBackend::check_not_capturing(const char* what) const {
  CVLLM_CHECK(!capturing_, what, " reads host data when it runs, so it cannot be part of a CUDA "
              "graph");
}

Tensor CudaBackend::upload(const std::vector<float>& values, std::vector<int64_t> shape) {
  check_not_capturing("a host-to-device upload");
  Tensor t = alloc_uninitialized(DType::kF32, std::move(shape));
  CVLLM_CHECK(static_cast<int64_t>(values.size()) == t.numel(), "upload: ", values.size(),
              " values for ", t.describe());
  if (!values.empty()) {
    CVLLM_CUDA_CHECK(cudaMemcpyAsync(t.data(), values.data(), t.nbytes(), cudaMemcpyHostToDevice,
                                     stream_));
  }
  return t;
}

Tensor CudaBackend::prepare_weight(const Tensor& w) {
  CVLLM_CHECK(w.device() == Device::kCpu, "prepare_weight takes a host tensor, got a device one");
  CVLLM_CHECK(dequantize_supported(w.dtype()), "the CUDA backend cannot read weights of type ",
              dtype_name(w.dtype()), " (", w.describe(), ")");
  // Matrices become bf16 (the GEMM operand type); vectors (norm weights, biases) stay f32.
  const bool matrix = w.ndim() >= 2;
  Tensor out = alloc_uninitialized(matrix ? DType::kBF16 : DType::kF32, w.shape());
  const size_t bytes = w.nbytes();
  if (bytes == 0) return out;
  if (upload_.nbytes() < bytes) {
    upload_ = Tensor();  // give the old scratch back first
    upload_ = alloc_uninitialized(DType::kI8, {static_cast<int64_t>(bytes)});
  }
  wrote(upload_);
  CVLLM_CUDA_CHECK(cudaMemcpyAsync(upload_.data(), w.data(), bytes, cudaMemcpyHostToDevice, stream_));
  if (matrix) {
    dequantize_to_bf16(w.dtype(), upload_.data(), out.data_as<bf16>(), w.numel(), stream_);
  } else {
    dequantize_to_f32(w.dtype(), upload_.data(), out.data_as<float>(), w.numel(), stream_);
  }
  return out;
}

namespace {

// The step's arrays besides the batch's own: each token's request, attention work lists and
// prefill tiles (see CudaStepMetadata).
struct StepArrays {
  std::vector<int32_t> token_to_req;
  WorkList all_work, rest_work;
  std::vector<int32_t> tile_req, tile_first_token;
  std::vector<int32_t> rest_tokens;  // tokens outside flash tiles
  int64_t decode_pieces_all = 0, decode_pieces_rest = 0, num_rest_tokens = 0;
};

void check_batch(const ForwardBatch& b) {
  const int64_t num_tokens = b.num_tokens(), num_reqs = b.num_reqs();
  CVLLM_CHECK(static_cast<int64_t>(b.positions.size()) == num_tokens &&
                  static_cast<int64_t>(b.slot_mapping.size()) == num_tokens &&
                  static_cast<int64_t>(b.query_start_loc.size()) == num_reqs + 1 &&
                  static_cast<int64_t>(b.block_table.size()) == num_reqs * b.max_blocks_per_req &&
                  b.query_start_loc.back() == num_tokens,
              "inconsistent ForwardBatch: ", num_tokens, " tokens, ", num_reqs, " requests");
}

// fixed_shape: a recorded decode step, whose attention runs on decode_attention alone with its
// pieces bounded by the block table's width, so no work lists are built.
StepArrays step_arrays(const ForwardBatch& b, bool fixed_shape) {
  StepArrays a;
  a.token_to_req.resize(static_cast<size_t>(b.num_tokens()));
  for (int64_t r = 0; r < b.num_reqs(); ++r) {
    const int32_t q_start = b.query_start_loc[r], q_len = b.query_start_loc[r + 1] - q_start;
    const bool flash = q_len >= kFlashMinQueries;
    CVLLM_CHECK(!fixed_shape || q_len == 1, "a recorded step takes one token per request, request ",
                r, " has ", q_len);
    for (int32_t t = q_start; t < q_start + q_len; ++t) {
      a.token_to_req[t] = static_cast<int32_t>(r);
      const int64_t pos = b.seq_lens[r] - q_len + (t - q_start);
      CVLLM_CHECK(pos >= 0, "request ", r, " has more new tokens than its seq_len");
      if (fixed_shape) continue;
      const int64_t piece = flash ? kSplitKeys : kDecodeSplitKeys;
      a.all_work.add(t, pos, piece, false);
      a.rest_work.add(t, pos, piece, flash);
      const int64_t pieces = decode_max_pieces(pos + 1);  // for any sliding window too
      a.decode_pieces_all = std::max(a.decode_pieces_all, pieces);
      if (!flash) {
        a.decode_pieces_rest = std::max(a.decode_pieces_rest, pieces);
        ++a.num_rest_tokens;
        a.rest_tokens.push_back(t);
      }
    }
    for (int32_t t = q_start; flash && t < q_start + q_len; t += kFlashTileQueries) {
      a.tile_req.push_back(static_cast<int32_t>(r));
      a.tile_first_token.push_back(t);
    }
  }
  return a;
}

// The step's arrays in buffer order (CudaStepMetadata::point_at reads them in this order), with
// their offsets set; returns them and the buffer's size.
std::vector<StepPart> step_parts(const ForwardBatch& b, const StepArrays& a, size_t& total) {
  auto part = [](const auto& v) { return StepPart{v.data(), v.size() * sizeof(v[0])}; };
  std::vector<StepPart> parts = {
      part(b.slot_mapping), part(b.input_ids), part(b.positions), part(b.query_start_loc),
      part(b.seq_lens), part(b.block_table), part(a.token_to_req),
      part(a.all_work.token), part(a.all_work.key_begin), part(a.all_work.key_end),
      part(a.all_work.first),
      part(a.rest_work.token), part(a.rest_work.key_begin), part(a.rest_work.key_end),
      part(a.rest_work.first),
      part(a.tile_req), part(a.tile_first_token), part(a.rest_tokens),
  };
  total = 0;
  for (StepPart& p : parts) {
    p.offset = total;
    total += (p.bytes + 15) / 16 * 16;
  }
  return parts;
}

void point_at(CudaStepMetadata& step, const uint8_t* dev, const std::vector<StepPart>& parts,
              const StepArrays& a) {
  step.slot_mapping = reinterpret_cast<const int64_t*>(dev + parts[0].offset);
  auto at = [&](int i) { return reinterpret_cast<const int32_t*>(dev + parts[i].offset); };
  step.input_ids = at(1);
  step.positions = at(2);
  step.query_start_loc = at(3);
  step.seq_lens = at(4);
  step.block_table = at(5);
  step.token_to_req = at(6);
  auto items = [&](const WorkList& w, int first_part) {
    CudaStepMetadata::WorkItems out;
    out.num_items = static_cast<int64_t>(w.token.size());
    out.has_split = w.has_split;
    out.token = at(first_part);
    out.key_begin = at(first_part + 1);
    out.key_end = at(first_part + 2);
    out.first = at(first_part + 3);
    return out;
  };
  step.all_work = items(a.all_work, 7);
  step.rest_work = items(a.rest_work, 11);
  step.flash_tiles.num_tiles = static_cast<int64_t>(a.tile_req.size());
  step.flash_tiles.tile_req = at(15);
  step.flash_tiles.tile_first_token = at(16);
  step.decode_pieces_all = a.decode_pieces_all;
  step.decode_pieces_rest = a.decode_pieces_rest;
  step.num_rest_tokens = a.num_rest_tokens;
  step.rest_tokens = at(17);
}

}  // namespace

void CudaBackend::upload_step(const ForwardBatch& b, const std::vector<StepPart>& parts,
                              size_t total, void* dev) {
  // The previous step's upload must have left the staging buffer before it is rewritten.
  CVLLM_CUDA_CHECK(cudaEventSynchronize(staging_done_));
  if (staging_bytes_ < total) {
    if (staging_ != nullptr) CVLLM_CUDA_CHECK(cudaFreeHost(staging_));
    staging_ = nullptr;
    const size_t bytes = std::max(total, staging_bytes_ * 2);
    CVLLM_CUDA_CHECK(cudaHostAlloc(&staging_, bytes, cudaHostAllocDefault));
    staging_bytes_ = bytes;
  }
  uint8_t* host = static_cast<uint8_t*>(staging_);
  for (const StepPart& p : parts) {
    if (p.bytes > 0) std::memcpy(host + p.offset, p.src, p.bytes);
  }
  if (total > 0) {
    CVLLM_CUDA_CHECK(cudaMemcpyAsync(dev, host, total, cudaMemcpyHostToDevice, stream_));
  }
  CVLLM_CUDA_CHECK(cudaEventRecord(staging_done_, stream_));
  // input_ids is the second part (step_parts).
  feed_drawn_tokens(b, reinterpret_cast<int32_t*>(static_cast<uint8_t*>(dev) + parts[1].offset));
}

std::unique_ptr<StepMetadata> CudaBackend::prepare_step(const ForwardBatch& b) {
  return make_step(b, false);
}

std::unique_ptr<CudaStepMetadata> CudaBackend::make_step(const ForwardBatch& b, bool fixed_shape) {
  check_batch(b);
  const StepArrays arrays = step_arrays(b, fixed_shape);
  size_t total = 0;
  const std::vector<StepPart> parts = step_parts(b, arrays, total);
  auto step = std::make_unique<CudaStepMetadata>();
  step->batch = &b;
  step->fixed_shape = fixed_shape;
  step->memory = allocator_->allocate(total);
  step->bytes = total;
  upload_step(b, parts, total, step->memory.get());
  point_at(*step, static_cast<const uint8_t*>(step->memory.get()), parts, arrays);
  return step;
}

// A recorded decode pass: the graph, the step buffer its kernels read (rewritten before each
// replay), its output, and the scratch it uses that outlives one pass.
class CudaCapturedForward : public CapturedForward {
 public:
  ~CudaCapturedForward() override {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
    if (graph != nullptr) cudaGraphDestroy(graph);
  }
  ForwardBatch batch;  // the placeholder it was recorded with (step->batch points here)
  std::unique_ptr<CudaStepMetadata> step;
  Tensor output;
  std::vector<Tensor> keep;  // decode_attention's counters, RoPE tables
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
};

std::unique_ptr<CapturedForward> CudaBackend::capture_forward(const ForwardBatch& batch,
                                                              const ForwardFn& forward) {
  if (!use_graphs_) return nullptr;
  auto captured = std::make_unique<CudaCapturedForward>();
  captured->batch = batch;
  captured->step = make_step(captured->batch, true);
  // Eagerly first: RoPE tables, GEMM plans and scratch sizes exist before recording.
  forward(*captured->step);
  // Recorded with the graph pool, so the kernels' temporaries stay reserved for replays (graphs
  // never run at once, so they share it). The scratch starts empty, so no recorded kernel writes
  // a block the eager allocator may hand out later.
  x_bf16_ = Tensor();
  bf16_source_ = nullptr;
  capturing_ = true;
  // Relaxed: the graph pool may cudaMalloc while recording (its blocks stay reserved, so the
  // recorded addresses stay valid).
  CVLLM_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeRelaxed));
  auto end_capture = [&]() {
    cudaGraph_t graph = nullptr;
    const cudaError_t err = cudaStreamEndCapture(stream_, &graph);
    capturing_ = false;
    x_bf16_ = Tensor();
    bf16_source_ = nullptr;
    return std::make_pair(err, graph);
  };
  try {
    captured->output = forward(*captured->step);
  } catch (...) {
    auto [err, graph] = end_capture();
    if (graph != nullptr) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  auto [err, graph] = end_capture();
  captured->graph = graph;
  CVLLM_CUDA_CHECK(err);
  CVLLM_CUDA_CHECK(cudaGraphInstantiate(&captured->exec, captured->graph, 0));
  captured->keep.push_back(decode_counters_);
  for (const auto& [key, table] : inv_freqs_) captured->keep.push_back(table.device);
  return captured;
}

Tensor CudaBackend::replay_forward(CapturedForward& captured, const ForwardBatch& b) {
  auto* c = dynamic_cast<CudaCapturedForward*>(&captured);
  CVLLM_CHECK(c != nullptr, "replay_forward: not a pass recorded by the CUDA backend");
  CVLLM_CHECK(b.num_tokens() == c->batch.num_tokens() && b.num_reqs() == c->batch.num_reqs() &&
                  b.max_blocks_per_req == c->batch.max_blocks_per_req,
              "replay_forward: a batch of ", b.num_reqs(), " requests x ", b.max_blocks_per_req,
              " blocks for a pass recorded with ", c->batch.num_reqs(), " x ",
              c->batch.max_blocks_per_req);
  check_batch(b);
  const StepArrays arrays = step_arrays(b, true);
  size_t total = 0;
  const std::vector<StepPart> parts = step_parts(b, arrays, total);
  CVLLM_CHECK(total == c->step->bytes, "replay_forward: step layout changed");
  upload_step(b, parts, total, c->step->memory.get());
  CVLLM_CUDA_CHECK(cudaGraphLaunch(c->exec, stream_));
  bf16_source_ = nullptr;  // the scratch holds whatever the graph left
  ++graph_replays_;
  return c->output;
}

void CudaBackend::embedding(const Tensor& table, const StepMetadata& step, Tensor& out) {
  const CudaStepMetadata& s = cuda_step(step);
  check_device(table, "embedding table");
  check_f32(out, "embedding output");
  CVLLM_CHECK(table.dtype() == DType::kBF16 || table.dtype() == DType::kF32,
              "embedding table must be prepared (bf16 or f32), got ", table.describe());
  const int64_t num_tokens = step.batch->num_tokens();
  const int64_t width = table.dim(-1);
  CVLLM_CHECK(out.numel() == num_tokens * width, "embedding output ", out.describe(),
              " does not fit ", num_tokens, " rows of ", width);
  for (int32_t id : step.batch->input_ids) {
    CVLLM_CHECK(id >= 0 && id < table.dim(0), "token id ", id, " out of range [0, ", table.dim(0), ")");
  }
  wrote(out);
  cuda::gather_rows(table.data(), table.dtype() == DType::kBF16, s.input_ids, num_tokens, width,
                    out.data_as<float>(), stream_);
}

void CudaBackend::position_embedding(const Tensor& table, const StepMetadata& step, int64_t offset,
                                     Tensor& out) {
  check_device(table, "position table");
  check_f32(out, "position embedding output");
  CVLLM_CHECK(table.dtype() == DType::kBF16 || table.dtype() == DType::kF32,
              "position table must be prepared (bf16 or f32), got ", table.describe());
  const int64_t num_tokens = step.batch->num_tokens(), width = table.dim(-1);
  CVLLM_CHECK(out.numel() == num_tokens * width, "position embedding output ", out.describe(),
              " does not fit ", num_tokens, " rows of ", width);
  position_rows(step, offset, table.dim(0));  // the check; the kernel reads the device positions
  wrote(out);
  cuda::gather_rows(table.data(), table.dtype() == DType::kBF16, cuda_step(step).positions,
                    num_tokens, width, out.data_as<float>(), stream_, static_cast<int32_t>(offset));
}

void CudaBackend::gather_rows(const Tensor& src, const std::vector<int32_t>& rows, Tensor& out) {
  check_device(src, "gather source");
  check_f32(out, "gather output");
  CVLLM_CHECK(src.dtype() == DType::kBF16 || src.dtype() == DType::kF32,
              "gather source must be bf16 or f32, got ", src.describe());
  const int64_t width = src.dim(-1);
  CVLLM_CHECK(out.numel() == static_cast<int64_t>(rows.size()) * width, "gather output ",
              out.describe(), " does not fit ", rows.size(), " rows of ", width);
  for (int32_t r : rows) {
    CVLLM_CHECK(r >= 0 && r < src.dim(0), "row id ", r, " out of range [0, ", src.dim(0), ")");
  }
  if (rows.empty()) return;
  check_not_capturing("gather_rows with host row ids");
  wrote(out);
  std::shared_ptr<void> ids = allocator_->allocate(rows.size() * sizeof(int32_t));
  CVLLM_CUDA_CHECK(cudaMemcpyAsync(ids.get(), rows.data(), rows.size() * sizeof(int32_t),
                                   cudaMemcpyHostToDevice, stream_));
  cuda::gather_rows(src.data(), src.dtype() == DType::kBF16, static_cast<const int32_t*>(ids.get()),
                    static_cast<int64_t>(rows.size()), width, out.data_as<float>(), stream_);
}

const void* CudaBackend::to_bf16_scratch(const Tensor& x) {
  const int64_t n = x.numel();
  if (bf16_source_ == x.data() && bf16_numel_ == n) return x_bf16_.data();  // left by a norm
  bf16* out = bf16_scratch(n);
  convert_f32_to_bf16(x.data_as<float>(), out, n, stream_);
  bf16_source_ = x.data();
  bf16_numel_ = n;
  return out;
}

void CudaBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  const Tensor* ws[] = {&w};
  Tensor* ys[] = {&y};
  linear_many(x, ws, ys);
  if (bias != nullptr) {  // y was reported written by linear_many
    check_f32(*bias, "linear bias");
    CVLLM_CHECK(bias->numel() == w.dim(0), "bias ", bias->describe(), " for weight ", w.describe());
    add_bias(y.data_as<float>(), bias->data_as<float>(), rows_of(y), w.dim(0), stream_);
  }
}

void CudaBackend::linear_many(const Tensor& x, std::span<const Tensor* const> ws,
                              std::span<Tensor* const> ys) {
  check_f32(x, "linear input");
  CVLLM_CHECK(ws.size() == ys.size(), "linear_many: ", ws.size(), " weights, ", ys.size(), " outputs");
  const int64_t num_tokens = rows_of(x);
  for (size_t i = 0; i < ws.size(); ++i) {
    const Tensor& w = *ws[i];
    check_device(w, "linear weight");
    check_f32(*ys[i], "linear output");
    CVLLM_CHECK(w.dtype() == DType::kBF16 && w.ndim() == 2 && x.dim(-1) == w.dim(1) &&
                    ys[i]->dim(-1) == w.dim(0) && rows_of(*ys[i]) == num_tokens,
                "linear shapes: x ", x.describe(), " w ", w.describe(), " y ", ys[i]->describe());
  }
  if (num_tokens == 0) return;
  const bf16* xb = static_cast<const bf16*>(to_bf16_scratch(x));  // one conversion for all
  for (Tensor* y : ys) wrote(*y);
  // Decode-sized: matrix-vector kernels, the weights sharing this input in one launch.
  GemvOutputs gemv;
  for (size_t i = 0; i < ws.size(); ++i) {
    if (use_gemv_ && gemv_applies(ws[i]->data(), xb, num_tokens, ws[i]->dim(1))) {
      gemv.w[gemv.count] = ws[i]->data_as<bf16>();
      gemv.y[gemv.count] = ys[i]->data_as<float>();
      gemv.rows[gemv.count] = ws[i]->dim(0);
      if (++gemv.count == kGemvMaxOutputs) {
        gemv_bf16(gemv, xb, num_tokens, x.dim(-1), stream_);
        gemv = GemvOutputs{};
      }
    } else {
      gemm_->run(ws[i]->data_as<bf16>(), xb, ys[i]->data_as<float>(), ws[i]->dim(0), num_tokens,
                 ws[i]->dim(1));
    }
  }
  if (gemv.count > 0) gemv_bf16(gemv, xb, num_tokens, x.dim(-1), stream_);
}

void CudaBackend::gated_linear(const Tensor& x, const Tensor& w_gate, const Tensor& w_up,
                               GatedActivation act, Tensor& gate, Tensor& up, Tensor& out) {
  check_f32(x, "linear input");
  check_f32(out, "activation output");
  check_device(w_gate, "gate weight");
  check_device(w_up, "up weight");
  const int64_t num_tokens = rows_of(x);
  const bool shapes_ok = w_gate.dtype() == DType::kBF16 && w_up.dtype() == DType::kBF16 &&
                         w_gate.ndim() == 2 && w_gate.shape() == w_up.shape() &&
                         x.dim(-1) == w_gate.dim(1) && out.dim(-1) == w_gate.dim(0) &&
                         rows_of(out) == num_tokens;
  if (!shapes_ok || num_tokens == 0) return Backend::gated_linear(x, w_gate, w_up, act, gate, up, out);
  const int64_t ffn = w_gate.dim(0), k = x.dim(-1);
  const bf16* xb = static_cast<const bf16*>(to_bf16_scratch(x));
  const bool gemv = use_gemv_ && gemv_applies(w_gate.data(), xb, num_tokens, k) &&
                    gemv_applies(w_up.data(), xb, num_tokens, k);
  // Prefill-sized batches run the GEMMs with bf16 outputs (as vLLM's activations), which halves
  // the traffic of the products and of the activation kernel that reads them; so does every
  // batch when all sizes must share one path (batch invariance). Other decode-sized batches
  // without the matrix-vector kernels keep f32 products.
  const bool bf16_products = !gemv && (batch_invariant_gemm_ || num_tokens > kGemvMaxTokens);
  if (!gemv && !bf16_products) return Backend::gated_linear(x, w_gate, w_up, act, gate, up, out);
  // The activation is written straight into a second bf16 buffer (the down projection's input),
  // which then becomes the scratch.
  wrote(out);
  Tensor out_bf16 = alloc_uninitialized(DType::kBF16, {out.numel()});
  if (gemv) {  // both products and the activation in one matrix-vector pass
    gemv_gated_bf16(w_gate.data_as<bf16>(), w_up.data_as<bf16>(),
                    act == GatedActivation::kSilu ? GatedActivationKind::kSilu
                                                  : GatedActivationKind::kGeluTanh,
                    xb, num_tokens, ffn, k, out.data_as<float>(), out_bf16.data_as<bf16>(), stream_);
  } else {
    Tensor gate_b = alloc_uninitialized(DType::kBF16, {num_tokens, ffn});
    Tensor up_b = alloc_uninitialized(DType::kBF16, {num_tokens, ffn});
    gemm_->run(w_gate.data_as<bf16>(), xb, gate_b.data_as<bf16>(), ffn, num_tokens, k);
    gemm_->run(w_up.data_as<bf16>(), xb, up_b.data_as<bf16>(), ffn, num_tokens, k);
    gated_bf16(gate_b.data_as<bf16>(), up_b.data_as<bf16>(), act == GatedActivation::kSilu,
               out.data_as<float>(), out_bf16.data_as<bf16>(), out.numel(), stream_);
  }
  x_bf16_ = std::move(out_bf16);
  bf16_source_ = out.data();
  bf16_numel_ = out.numel();
}

void CudaBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                           float weight_offset) {
  check_f32(x, "norm input");
  check_f32(w, "norm weight");
  check_f32(y, "norm output");
  CVLLM_CHECK(w.numel() == x.dim(-1) && y.numel() == x.numel(), "rms_norm shapes: x ",
              x.describe(), " w ", w.describe(), " y ", y.describe());
  wrote(y);
  bf16* y_bf16 = bf16_scratch(y.numel());
  cuda::rms_norm(x.data_as<float>(), nullptr, w.data_as<float>(), y.data_as<float>(), y_bf16,
                 rows_of(x), x.dim(-1), eps, weight_offset, stream_);
  bf16_source_ = y.data();
  bf16_numel_ = y.numel();
}

void CudaBackend::add_rms_norm(const Tensor& x, Tensor& residual, const Tensor& w, float eps,
                               Tensor& y, float weight_offset) {
  check_f32(x, "norm input");
  check_f32(residual, "residual");
  check_f32(w, "norm weight");
  check_f32(y, "norm output");
  CVLLM_CHECK(w.numel() == x.dim(-1) && y.numel() == x.numel() && residual.numel() == x.numel(),
              "add_rms_norm shapes: x ", x.describe(), " residual ", residual.describe(), " w ",
              w.describe(), " y ", y.describe());
  wrote(residual);
  wrote(y);
  bf16* y_bf16 = bf16_scratch(y.numel());
  cuda::rms_norm(x.data_as<float>(), residual.data_as<float>(), w.data_as<float>(),
                 y.data_as<float>(), y_bf16, rows_of(x), x.dim(-1), eps, weight_offset, stream_);
  bf16_source_ = y.data();
  bf16_numel_ = y.numel();
}

void CudaBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor* bias, float eps,
                             Tensor& y) {
  check_f32(x, "norm input");
  check_f32(w, "norm weight");
  check_f32(y, "norm output");
  if (bias != nullptr) check_f32(*bias, "norm bias");
  CVLLM_CHECK(w.numel() == x.dim(-1) && y.numel() == x.numel(), "layer_norm shapes: x ",
              x.describe(), " w ", w.describe(), " y ", y.describe());
  wrote(y);
  cuda::layer_norm(x.data_as<float>(), w.data_as<float>(), bias ? bias->data_as<float>() : nullptr,
                   y.data_as<float>(), rows_of(x), x.dim(-1), eps, stream_);
}

int* CudaBackend::decode_counters(int64_t n) {
  if (decode_counters_.numel() < n) {
    decode_counters_ = Tensor();
    decode_counters_ = alloc(DType::kI32, {std::max<int64_t>(n, 4096)});  // zeroed
  }
  return decode_counters_.data_as<int>();
}

const float* CudaBackend::device_inv_freq(const RopeParams& rope) {
  const size_t half = static_cast<size_t>(rope.rot_dim / 2);
  InvFreq& entry = inv_freqs_[rope.inv_freq];
  // The key is the layer's host table; compare contents too, since a freed table's address can
  // come back holding another model's frequencies.
  if (entry.host.size() != half ||
      std::memcmp(entry.host.data(), rope.inv_freq, half * sizeof(float)) != 0) {
    entry.host.assign(rope.inv_freq, rope.inv_freq + half);
    entry.device = upload(entry.host, {static_cast<int64_t>(half)});
  }
  return entry.device.data_as<float>();
}

void CudaBackend::rotary(Tensor& q, Tensor& k, const StepMetadata& step, const RopeParams& rope) {
  const int64_t num_tokens = step.batch->num_tokens();
  if (num_tokens == 0) return;
  check_f32(q, "rotary q");
  check_f32(k, "rotary k");
  CVLLM_CHECK(rope.rot_dim <= rope.head_size && rope.rot_dim % 2 == 0 && rope.inv_freq != nullptr,
              "bad rope parameters: rot_dim ", rope.rot_dim, " head_size ", rope.head_size);
  const int64_t num_heads = q.numel() / (num_tokens * rope.head_size);
  const int64_t num_kv_heads = k.numel() / (num_tokens * rope.head_size);
  wrote(q);
  wrote(k);
  cuda::rotary(q.data_as<float>(), k.data_as<float>(), cuda_step(step).positions, num_tokens,
               num_heads, num_kv_heads, rope.head_size, rope.rot_dim, device_inv_freq(rope),
               rope.style == RopeStyle::kNeox, rope.mscale, stream_);
}

void CudaBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  check_f32(gate, "gate");
  check_f32(up, "up");
  check_f32(out, "activation output");
  CVLLM_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel(), "silu_mul shapes");
  wrote(out);
  bf16* out_bf16 = bf16_scratch(out.numel());  // the down projection's input
  cuda::silu_mul(gate.data_as<float>(), up.data_as<float>(), out.data_as<float>(), out_bf16,
                 gate.numel(), stream_);
  bf16_source_ = out.data();
  bf16_numel_ = out.numel();
}

void CudaBackend::gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  check_f32(gate, "gate");
  check_f32(up, "up");
  check_f32(out, "activation output");
  CVLLM_CHECK(gate.numel() == up.numel() && out.numel() == gate.numel(), "gelu_tanh_mul shapes");
  wrote(out);
  cuda::gelu_tanh_mul(gate.data_as<float>(), up.data_as<float>(), out.data_as<float>(), gate.numel(),
                      stream_);
}

void CudaBackend::relu(const Tensor& x, Tensor& out) {
  check_f32(x, "activation input");
  check_f32(out, "activation output");
  CVLLM_CHECK(x.numel() == out.numel(), "relu shapes: ", x.describe(), " vs ", out.describe());
  wrote(out);
  cuda::relu(x.data_as<float>(), out.data_as<float>(), x.numel(), stream_);
}

void CudaBackend::gelu_tanh(const Tensor& x, Tensor& out) {
  check_f32(x, "activation input");
  check_f32(out, "activation output");
  CVLLM_CHECK(x.numel() == out.numel(), "gelu_tanh shapes: ", x.describe(), " vs ",
              out.describe());
  wrote(out);
  cuda::gelu_tanh(x.data_as<float>(), out.data_as<float>(), x.numel(), stream_);
}

void CudaBackend::scale(Tensor& x, float factor) {
  check_f32(x, "scale operand");
  wrote(x);
  cuda::scale(x.data_as<float>(), factor, x.numel(), stream_);
}

void CudaBackend::softcap(Tensor& x, float cap) {
  check_f32(x, "softcap operand");
  CVLLM_CHECK(cap > 0.0f, "softcap needs a positive cap, got ", cap);
  wrote(x);
  cuda::softcap(x.data_as<float>(), cap, x.numel(), stream_);
}

void CudaBackend::add(const Tensor& a, Tensor& b) {
  check_f32(a, "add input");
  check_f32(b, "add output");
  CVLLM_CHECK(a.numel() == b.numel(), "add: ", a.describe(), " vs ", b.describe());
  wrote(b);
  cuda::add(a.data_as<float>(), b.data_as<float>(), a.numel(), stream_);
}

void CudaBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                            const StepMetadata& step, const AttentionParams& p, Tensor& out) {
  attend(q, k, v, cache, step, p, out, nullptr);
}

void CudaBackend::rope_attention(Tensor& q, Tensor& k, const Tensor& v, KVCacheLayer& cache,
                                 const StepMetadata& step, const RopeParams& rope,
                                 const AttentionParams& p, Tensor& out) {
  CVLLM_CHECK(rope.rot_dim <= rope.head_size && rope.rot_dim % 2 == 0 && rope.inv_freq != nullptr &&
                  rope.head_size == p.head_size,
              "bad rope parameters: rot_dim ", rope.rot_dim, " head_size ", rope.head_size,
              " for attention head_size ", p.head_size);
  attend(q, k, v, cache, step, p, out, rope.rot_dim > 0 ? &rope : nullptr);
}

void CudaBackend::attend(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                         const StepMetadata& step, const AttentionParams& p, Tensor& out,
                         const RopeParams* rope) {
  const CudaStepMetadata& s = cuda_step(step);
  const ForwardBatch& b = *step.batch;
  for (const Tensor* t : {&q, &k, &v, static_cast<const Tensor*>(&out)}) {
    check_f32(*t, "attention operand");
  }
  check_device(cache.k, "K cache");
  check_device(cache.v, "V cache");
  CVLLM_CHECK(cache.k.dtype() == cache.v.dtype() &&
                  (cache.k.dtype() == DType::kF32 || cache.k.dtype() == DType::kBF16),
              "CUDA KV cache must be f32 or bf16, got ", cache.k.describe());
  CVLLM_CHECK(cache.k.numel() % (cache.block_size * p.num_kv_heads * p.head_size) == 0,
              "KV cache ", cache.k.describe(), " does not hold whole blocks");
  const int64_t num_tokens = b.num_tokens();
  CVLLM_CHECK(q.numel() == num_tokens * p.num_heads * p.head_size &&
                  k.numel() == num_tokens * p.num_kv_heads * p.head_size &&
                  v.numel() == k.numel() && out.numel() == q.numel(),
              "attention shapes: q ", q.describe(), " k ", k.describe(), " out ", out.describe());
  CVLLM_CHECK(p.head_size > 0 && p.head_size <= kMaxAttentionHeadSize,
              "CUDA attention supports head_size up to ", kMaxAttentionHeadSize, ", got ", p.head_size);
  CVLLM_CHECK(p.num_kv_heads > 0 && p.num_heads % p.num_kv_heads == 0, "num_heads ", p.num_heads,
              " is not a multiple of num_kv_heads ", p.num_kv_heads);
  if (num_tokens == 0) return;
  PagedAttentionArgs a;
  a.num_tokens = num_tokens;
  a.num_heads = p.num_heads;
  a.num_kv_heads = p.num_kv_heads;
  a.head_size = p.head_size;
  a.block_size = cache.block_size;
  a.max_blocks_per_req = b.max_blocks_per_req;
  a.scale = p.scale;
  a.logit_softcap = p.logit_softcap;
  a.sliding_window = p.sliding_window;
  a.cache_is_bf16 = cache.k.dtype() == DType::kBF16;
  wrote(out);
  wrote(cache.k);
  wrote(cache.v);
  if (rope != nullptr) {  // q and k rotate in place on the way
    wrote(q);
    wrote(k);
    RopeArgs r;
    r.positions = s.positions;
    r.inv_freq = device_inv_freq(*rope);
    r.rot_dim = rope->rot_dim;
    r.neox = rope->style == RopeStyle::kNeox;
    r.mscale = rope->mscale;
    rope_write_kv_cache(const_cast<float*>(q.data_as<float>()), const_cast<float*>(k.data_as<float>()),
                        v.data_as<float>(), cache.k.data(), cache.v.data(), s.slot_mapping, r, a,
                        stream_);
  } else {
    write_kv_cache(k.data_as<float>(), v.data_as<float>(), cache.k.data(), cache.v.data(),
                   s.slot_mapping, a, stream_);
  }
  // Prefill chunks go to the tensor-core kernel when it takes this cache and head size; the
  // CUDA-core kernel handles the other tokens (or all of them).
  const bool flash = use_flash_ && s.flash_tiles.num_tiles > 0 && flash_prefill_supports(a);
  const bool flash_mma = flash && use_flash_mma_ && flash_prefill_mma_supports(a.head_size);
  const bool decode_kernel = use_decode_attention_ && decode_attention_supports(a);
  if (s.fixed_shape && !decode_kernel) {
    throw Error(cat("a recorded decode step needs decode_attention: a bf16 KV cache, head size 16, "
                    "32, 64, 128 or 256 and at most ", kDecodeMaxGroup, " query heads per KV head (this "
                    "layer: head size ", p.head_size, ", ", p.num_heads / p.num_kv_heads,
                    " query heads per KV head, ", dtype_name(cache.k.dtype()), " cache)"));
  }
  // When every token's output comes from kernels that also write bf16 (decode_attention, the
  // mma.sync prefill kernel), the output projection's bf16 input is written on the way.
  bf16* out_bf16 = decode_kernel && (!flash || flash_mma) ? bf16_scratch(out.numel()) : nullptr;
  if (decode_kernel) {
    DecodeAttentionWork work;
    // A recorded step covers any position its block table can reach (a token with fewer pieces
    // leaves the surplus blocks nothing to do).
    work.max_pieces = s.fixed_shape ? decode_max_pieces(b.max_blocks_per_req * cache.block_size)
                      : flash      ? s.decode_pieces_rest
                                   : s.decode_pieces_all;
    // One block per piece, except in a recorded step of many tokens: there most of a grid sized
    // for the widest block table would be empty blocks, so each (token, KV head) gets enough
    // blocks to keep ~2,048 busy, looping over its pieces.
    work.piece_stride = work.max_pieces;
    if (decode_piece_stride_ > 0) {
      work.piece_stride = std::min(decode_piece_stride_, work.max_pieces);
    } else if (s.fixed_shape) {
      const int64_t per_token = (2048 + num_tokens * p.num_kv_heads - 1) / (num_tokens * p.num_kv_heads);
      work.piece_stride = std::clamp<int64_t>(per_token, 1, work.max_pieces);
    }
    work.allow_cluster = decode_cluster_;
    if (flash) {  // the tokens outside the prefill tiles only
      work.tokens = s.rest_tokens;
      work.num_listed = s.num_rest_tokens;
    }
    const int64_t attended = flash ? s.num_rest_tokens : num_tokens;
    Tensor partial_out, partial_ml;  // freed after the call (stream order keeps them valid)
    if (work.max_pieces > 1 && attended > 0) {
      partial_out =
          alloc_uninitialized(DType::kF32, {attended * work.max_pieces, p.num_heads, p.head_size});
      partial_ml = alloc_uninitialized(DType::kF32, {attended * work.max_pieces, p.num_heads, 2});
      work.partial_out = partial_out.data_as<float>();
      work.partial_ml = partial_ml.data_as<float>();
      work.counters = decode_counters(attended * p.num_kv_heads);
    }
    decode_attention(q.data_as<float>(), cache.k.data(), cache.v.data(), out.data_as<float>(),
                     out_bf16, s.token_to_req, s.query_start_loc, s.seq_lens, s.block_table, work,
                     a, stream_);
  } else {
    const CudaStepMetadata::WorkItems& items = flash ? s.rest_work : s.all_work;
    AttentionWork work;
    work.num_items = items.num_items;
    work.has_split = items.has_split;
    work.work_token = items.token;
    work.key_begin = items.key_begin;
    work.key_end = items.key_end;
    work.token_first_work = items.first;
    Tensor partial_out, partial_ml;  // freed after the call (stream order keeps them valid)
    if (work.has_split) {
      partial_out = alloc_uninitialized(DType::kF32, {work.num_items, p.num_heads, p.head_size});
      partial_ml = alloc_uninitialized(DType::kF32, {work.num_items, p.num_heads, 2});
      work.partial_out = partial_out.data_as<float>();
      work.partial_ml = partial_ml.data_as<float>();
    }
    paged_attention(q.data_as<float>(), cache.k.data(), cache.v.data(), out.data_as<float>(),
                    s.token_to_req, s.query_start_loc, s.seq_lens, s.block_table, work, a, stream_);
  }
  if (flash_mma) {
    flash_prefill_attention_mma(q.data_as<float>(), cache.k.data(), cache.v.data(),
                                out.data_as<float>(), out_bf16, s.query_start_loc, s.seq_lens,
                                s.block_table, s.flash_tiles, a, stream_);
  } else if (flash) {
    flash_prefill_attention(q.data_as<float>(), cache.k.data(), cache.v.data(), out.data_as<float>(),
                            s.query_start_loc, s.seq_lens, s.block_table, s.flash_tiles, a, stream_);
  }
  if (out_bf16 != nullptr) {
    bf16_source_ = out.data();
    bf16_numel_ = out.numel();
  }
}

void CudaBackend::copy_blocks(std::vector<KVCacheLayer>& caches,
                              const std::vector<std::pair<int, int>>& src_dst) {
  check_not_capturing("copy_blocks");
  for (KVCacheLayer& layer : caches) {
    for (Tensor* t : {&layer.k, &layer.v}) {
      check_device(*t, "KV cache");
      wrote(*t);
      const size_t block_bytes = t->nbytes() / static_cast<size_t>(t->dim(0));
      uint8_t* base = static_cast<uint8_t*>(t->data());
      for (const auto& [src, dst] : src_dst) {
        CVLLM_CHECK(src >= 0 && dst >= 0 && src < t->dim(0) && dst < t->dim(0), "bad block copy ",
                    src, " -> ", dst);
        CVLLM_CUDA_CHECK(cudaMemcpyAsync(base + dst * block_bytes, base + src * block_bytes,
                                         block_bytes, cudaMemcpyDeviceToDevice, stream_));
      }
    }
  }
}

const void* CudaBackend::read_back(const void* device, size_t bytes) {
  check_not_capturing("a device-to-host copy");
  // Through a pinned buffer: a device-to-pageable copy goes through the driver's small staging
  // buffers at a fraction of the bus speed.
  if (readback_bytes_ < bytes) {
    if (readback_ != nullptr) CVLLM_CUDA_CHECK(cudaFreeHost(readback_));
    readback_ = nullptr;
    readback_bytes_ = 0;
    CVLLM_CUDA_CHECK(cudaHostAlloc(&readback_, bytes, cudaHostAllocDefault));
    readback_bytes_ = bytes;
  }
  if (bytes > 0) {
    CVLLM_CUDA_CHECK(cudaMemcpyAsync(readback_, device, bytes, cudaMemcpyDeviceToHost, stream_));
  }
  synchronize();
  return readback_;
}

std::vector<float> CudaBackend::to_host(const Tensor& t) {
  check_f32(t, "to_host");
  const auto* p = static_cast<const float*>(read_back(t.data(), t.nbytes()));
  return std::vector<float>(p, p + t.numel());
}

std::vector<float> CudaBackend::rows_to_host(const Tensor& t, const std::vector<int32_t>& rows) {
  check_f32(t, "rows_to_host");
  CVLLM_CHECK(t.ndim() == 2, "rows_to_host takes a matrix, got ", t.describe());
  Tensor picked = alloc_uninitialized(DType::kF32, {static_cast<int64_t>(rows.size()), t.dim(1)});
  gather_rows(t, rows, picked);
  return to_host(picked);
}

void CudaBackend::synchronize() { CVLLM_CUDA_CHECK(cudaStreamSynchronize(stream_)); }

CudaBackend::MemoryInfo CudaBackend::memory_info() const {
  size_t free_bytes = 0, total_bytes = 0;
  CVLLM_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  MemoryInfo info;
  info.free_bytes = static_cast<int64_t>(free_bytes);
  info.total_bytes = static_cast<int64_t>(total_bytes);
  info.cached_bytes = static_cast<int64_t>(allocator_->cached_bytes());
  // The graph pool's blocks are all reserved for recorded passes: in use.
  info.in_use_bytes = static_cast<int64_t>(allocator_->in_use_bytes() +
                                           graph_pool_->in_use_bytes() +
                                           graph_pool_->cached_bytes());
  info.peak_in_use_bytes = static_cast<int64_t>(allocator_->peak_in_use_bytes());
  info.graph_pool_bytes =
      static_cast<int64_t>(graph_pool_->in_use_bytes() + graph_pool_->cached_bytes());
  return info;
}

void CudaBackend::reset_peak_memory() { allocator_->reset_peak(); }

}  // namespace cvllm::cuda
