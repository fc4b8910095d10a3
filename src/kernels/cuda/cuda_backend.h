// The CUDA backend: every Backend op on one GPU and one stream. Weights are uploaded once and
// dequantized to bf16 on the device (1-D weights such as norms stay f32); activations are f32;
// linear layers run through cuBLASLt (bf16 operands, f32 accumulation and output); the KV cache
// is f32 or bf16 in the layout of cuda_ops.h. Device memory comes from a caching allocator.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cuda/cuda_ops.h"
#include "util/thread_pool.h"

struct CUstream_st;
struct CUevent_st;

namespace cvllm::cuda {

class DeviceAllocator;
class CublasLtGemm;
class CudaStepMetadata;
struct StepPart;

// True when the CUDA runtime sees at least one usable device (never throws).
bool cuda_device_available();

// Argument checks shared by the backend's files: a CUDA tensor; an f32 CUDA tensor.
void check_device(const Tensor& t, const char* what);
void check_f32(const Tensor& t, const char* what);

// Page-locked host memory (cudaHostAlloc): copies from and to it never wait for the stream.
struct PinnedBuffer {
  PinnedBuffer() = default;
  explicit PinnedBuffer(size_t n);
  ~PinnedBuffer();
  PinnedBuffer(PinnedBuffer&& other) noexcept;
  PinnedBuffer& operator=(PinnedBuffer&& other) noexcept;
  void* data = nullptr;
  size_t bytes = 0;
};

// Draws enqueued by begin_sample_on_device: their inputs and outputs on the device (`tokens`, the
// drawn ids, is what a fed step reads), and the pinned host buffer the outputs are copied back
// to, complete once `done` has passed.
class CudaPendingSamples : public PendingSamples {
 public:
  ~CudaPendingSamples() override;
  std::shared_ptr<void> device;
  const int32_t* tokens = nullptr;  // [num_rows] on the device
  int64_t num_rows = 0;
  PinnedBuffer host;  // inputs, then at in_bytes the outputs' copy
  size_t in_bytes = 0;
  size_t at_tokens = 0, at_lp = 0, at_rank = 0, at_top_ids = 0, at_top_lp = 0;  // in the outputs
  std::vector<int32_t> lp_samples;  // rows with logprobs, in output order
  std::vector<int32_t> num_logprobs;  // per row (-1: none)
  int lp_k = 0;  // logprobs per row in the outputs
  CUevent_st* done = nullptr;
  bool finished = false;
};

class CudaBackend : public Backend {
 public:
  // num_host_threads: threads for host-side work (sampling); <= 0 means one per core.
  // batch_invariant_gemm (see gemm.h): unset reads CVLLM_CUDA_BATCH_INVARIANT ("1": on; default
  // off, the faster per-batch-size choice).
  explicit CudaBackend(int device_index = 0, int num_host_threads = 0,
                       std::optional<bool> batch_invariant_gemm = std::nullopt);
  ~CudaBackend() override;

  std::string name() const override;
  Device device() const override { return Device::kCuda; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  Tensor prepare_weight(const Tensor& host_weight) override;
  std::unique_ptr<StepMetadata> prepare_step(const ForwardBatch& batch) override;

  void embedding(const Tensor& table, const StepMetadata& step, Tensor& out) override;
  void gather_rows(const Tensor& src, const std::vector<int32_t>& rows, Tensor& out) override;
  void position_embedding(const Tensor& table, const StepMetadata& step, int64_t offset,
                          Tensor& out) override;
  void linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) override;
  void linear_many(const Tensor& x, std::span<const Tensor* const> ws,
                   std::span<Tensor* const> ys) override;
  void rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                float weight_offset) override;
  void add_rms_norm(const Tensor& x, Tensor& residual, const Tensor& w, float eps, Tensor& y,
                    float weight_offset) override;
  void layer_norm(const Tensor& x, const Tensor& w, const Tensor* bias, float eps,
                  Tensor& y) override;
  void rotary(Tensor& q, Tensor& k, const StepMetadata& step, const RopeParams& rope) override;
  void silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor& out) override;
  void gated_linear(const Tensor& x, const Tensor& w_gate, const Tensor& w_up, GatedActivation act,
                    Tensor& gate, Tensor& up, Tensor& out) override;
  void relu(const Tensor& x, Tensor& out) override;
  void gelu_tanh(const Tensor& x, Tensor& out) override;
  void add(const Tensor& a, Tensor& b) override;
  void scale(Tensor& x, float factor) override;
  void softcap(Tensor& x, float cap) override;
  void rope_attention(Tensor& q, Tensor& k, const Tensor& v, KVCacheLayer& cache,
                      const StepMetadata& step, const RopeParams& rope,
                      const AttentionParams& params, Tensor& out) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                 const StepMetadata& step, const AttentionParams& params, Tensor& out) override;
  ThreadPool* host_pool() override { return &pool_; }
  void copy_blocks(std::vector<KVCacheLayer>& caches,
                   const std::vector<std::pair<int, int>>& src_dst) override;
  std::vector<float> to_host(const Tensor& t) override;
  std::vector<float> rows_to_host(const Tensor& t, const std::vector<int32_t>& rows) override;
  bool samples_on_device() const override { return sample_on_device_; }
  int max_device_logprobs() const override { return sample_on_device_ ? kMaxDeviceLogprobs : 0; }
  std::unique_ptr<PendingSamples> begin_sample_on_device(
      Tensor& logits, std::span<const DeviceSampleRow> rows) override;
  std::vector<DeviceSample> finish_sample_on_device(PendingSamples& pending) override;
  std::vector<TokenLogprobs> logprobs_on_device(const Tensor& logits, std::span<const int32_t> rows,
                                                std::span<const int32_t> tokens, int k) override;
  void synchronize() override;
  // CUDA graphs of decode steps; CVLLM_CUDA_GRAPHS=0 makes capture_forward return null.
  std::unique_ptr<CapturedForward> capture_forward(const ForwardBatch& batch,
                                                   const ForwardFn& forward) override;
  Tensor replay_forward(CapturedForward& captured, const ForwardBatch& batch) override;
  int64_t graph_replays() const { return graph_replays_; }  // since construction (tests)

  // Host-side helpers (tests, KV-cache sizing).
  Tensor upload(const std::vector<float>& values, std::vector<int64_t> shape);  // f32 copy
  struct MemoryInfo {
    int64_t free_bytes = 0;    // free on the device (cudaMemGetInfo)
    int64_t total_bytes = 0;   // the device's memory
    int64_t cached_bytes = 0;  // held by our allocator's free lists (reusable by us)
    int64_t in_use_bytes = 0;  // handed out by our allocator now, or reserved for CUDA graphs
    int64_t peak_in_use_bytes = 0;  // the most handed out at once since reset_peak_memory()
    int64_t graph_pool_bytes = 0;   // reserved for recorded CUDA graphs (part of in_use_bytes)
  };
  MemoryInfo memory_info() const;
  void reset_peak_memory();

 private:
  std::unique_ptr<CudaStepMetadata> make_step(const ForwardBatch& batch, bool fixed_shape);
  // Copies the step's arrays through the pinned staging buffer to `dev` (stream-ordered), then
  // writes the ids of the step's fed tokens (ForwardBatch::fed_rows) into its input_ids there.
  void upload_step(const ForwardBatch& batch, const std::vector<StepPart>& parts, size_t total,
                   void* dev);
  void feed_drawn_tokens(const ForwardBatch& batch, int32_t* input_ids);
  // Pinned buffers for draws in flight, kept for reuse (cudaHostAlloc is slow).
  PinnedBuffer take_pinned(size_t bytes);
  void give_back_pinned(PinnedBuffer buffer);
  // attention(), with the RoPE rotation fused into the KV-cache write when rope is given.
  void attend(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
              const StepMetadata& step, const AttentionParams& params, Tensor& out,
              const RopeParams* rope);
  // Where activations come from: the graph pool while a pass is being recorded.
  DeviceAllocator& memory() { return capturing_ ? *graph_pool_ : *allocator_; }
  // Ops that read host data of the step at launch time cannot be recorded.
  void check_not_capturing(const char* what) const;
  // Uninitialized device memory for a tensor of this shape.
  Tensor alloc_uninitialized(DType dtype, std::vector<int64_t> shape);
  // bf16 copy of an f32 activation (the GEMM operand), in the scratch buffer x_bf16_: reused
  // when the op that wrote x already left it there.
  const void* to_bf16_scratch(const Tensor& x);
  // The scratch buffer with room for n elements; its contents are about to be replaced.
  __nv_bfloat16* bf16_scratch(int64_t n);
  // Every op reports the device memory it writes: a write over the range whose bf16 copy sits in
  // the scratch makes that copy stale.
  void wrote(const Tensor& t);
  const float* device_inv_freq(const RopeParams& rope);
  // decode_attention's per-(token, KV head) counters, at least n of them, all zero.
  int* decode_counters(int64_t n);

  int device_index_;
  std::string device_name_;
  bool batch_invariant_gemm_ = false;
  bool use_gemv_ = true;  // linear layers of <= kGemvMaxTokens tokens use gemv_bf16
  bool use_flash_ = true;  // prefill chunks use flash_prefill_attention where it applies
  bool use_flash_mma_ = true;  // ... its mma.sync version for head sizes 64 and 128
  bool sample_on_device_ = true;  // the runner may draw plain rows with sample_on_device
  bool use_decode_attention_ = true;  // tokens outside prefill tiles use decode_attention
  bool use_graphs_ = true;  // capture_forward records CUDA graphs
  // decode_attention's blocks per (token, KV head): 0 picks (see attend()); CVLLM_CUDA_DECODE_STRIDE
  // sets it (tests, A/B runs).
  int64_t decode_piece_stride_ = 0;
  bool decode_cluster_ = true;  // CVLLM_CUDA_DECODE_CLUSTER
  bool capturing_ = false;  // a pass is being recorded on stream_
  int64_t graph_replays_ = 0;
  CUstream_st* stream_ = nullptr;
  std::shared_ptr<DeviceAllocator> allocator_;
  // Memory of recorded passes' temporaries: never handed to eager work, which could hold it
  // across a replay (best fit: smaller graphs, recorded after larger ones, reuse their blocks).
  std::shared_ptr<DeviceAllocator> graph_pool_;
  std::unique_ptr<CublasLtGemm> gemm_;
  ThreadPool pool_;
  // Pinned host staging for the per-step metadata upload; staging_done_ marks when the last
  // copy out of it finished, so it is not overwritten early.
  void* staging_ = nullptr;
  size_t staging_bytes_ = 0;
  CUevent_st* staging_done_ = nullptr;
  std::vector<PinnedBuffer> spare_pinned_;
  void* readback_ = nullptr;  // pinned host buffer for to_host
  size_t readback_bytes_ = 0;
  // Copies `bytes` of device memory to the host through readback_ and waits for it.
  const void* read_back(const void* device, size_t bytes);
  Tensor x_bf16_;        // scratch for linear inputs
  // x_bf16_ holds bf16 of the f32 device data at [bf16_source_, + bf16_numel_ floats) while
  // nothing has written there since (null: holds nothing reusable).
  const void* bf16_source_ = nullptr;
  int64_t bf16_numel_ = 0;
  Tensor upload_;        // scratch for raw weight bytes before dequantization
  Tensor decode_counters_;  // see decode_counters(); each launch leaves them at zero
  struct InvFreq {
    std::vector<float> host;
    Tensor device;
  };
  std::unordered_map<const float*, InvFreq> inv_freqs_;  // keyed by the layer's host table
};

}  // namespace cvllm::cuda
