// GEMMs through cuBLASLt: y[n, m] (f32 or bf16) = x[n, k] (bf16) . W[m, k]^T (bf16), f32
// accumulation.
// Layouts and algorithms are cached per shape and pointer alignment; split-K and other
// cross-block reductions are excluded.
//
// By default cuBLASLt picks the algorithm per n (the batch's row count), so a row's result can move
// by rounding between batch sizes (greedy tokens stay the same up to near-ties). With
// batch_invariant the algorithm for (m, k) is chosen once, for kReferenceTokens rows, and reused
// for every n it supports: each output element is then the same dot product in the same order
// whatever the batch, as on the CPU backend. Its cost depends on the card's heuristics: decode of
// one sequence (random Llama-1B shape) ran at 185 tok/s invariant vs 340 per-n on an H200 (the
// n = 64 kernel made a poor matrix-vector product there), but equally fast on an H100 (2026-11-27);
// so it is opt-in.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <tuple>

namespace cvllm::cuda {

class DeviceAllocator;

class CublasLtGemm {
 public:
  CublasLtGemm(std::shared_ptr<DeviceAllocator> allocator, cudaStream_t stream,
               bool batch_invariant);
  ~CublasLtGemm();
  CublasLtGemm(const CublasLtGemm&) = delete;
  CublasLtGemm& operator=(const CublasLtGemm&) = delete;

  // w: [m, k] bf16 row-major; x: [n, k] bf16 row-major; y: [n, m] f32 row-major.
  void run(const __nv_bfloat16* w, const __nv_bfloat16* x, float* y, int64_t m, int64_t n,
           int64_t k);
  // The same with y in bf16 (rounded once from the f32 accumulator): half the output traffic.
  void run(const __nv_bfloat16* w, const __nv_bfloat16* x, __nv_bfloat16* y, int64_t m, int64_t n,
           int64_t k);

 private:
  struct Plan {
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  // m, n, k, alignments, output type (cudaDataType)
  using Key = std::tuple<int64_t, int64_t, int64_t, int, int, int, int>;
  Plan& plan_for(const Key& key);
  void run_any(const __nv_bfloat16* w, const __nv_bfloat16* x, void* y, cudaDataType out_type,
               int64_t m, int64_t n, int64_t k);
  // The best algorithm without split-K for these layouts; false when cuBLASLt has none.
  bool heuristic(cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
                 int align_w, int align_x, int align_y, cublasLtMatmulAlgo_t* algo);
  // The batch-invariant algorithm for (m, k, alignments, output type), chosen at kReferenceTokens
  // rows.
  const cublasLtMatmulAlgo_t* reference_algo(int64_t m, int64_t k, int align_w, int align_x,
                                             int align_y, cudaDataType out_type);

  std::shared_ptr<DeviceAllocator> allocator_;
  cudaStream_t stream_;
  cublasLtHandle_t handle_ = nullptr;
  cublasLtMatmulDesc_t desc_ = nullptr;
  std::shared_ptr<void> workspace_;
  size_t workspace_bytes_ = 0;
  std::map<Key, Plan> plans_;
  bool batch_invariant_ = false;
  // (m, k, alignments, output type) -> algorithm chosen at kReferenceTokens rows (nullopt: none).
  std::map<std::tuple<int64_t, int64_t, int, int, int, int>, std::optional<cublasLtMatmulAlgo_t>>
      reference_algos_;
};

}  // namespace cvllm::cuda
