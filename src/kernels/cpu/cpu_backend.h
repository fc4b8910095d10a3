// The CPU backend: every op on host memory with the kernels in this folder, split across a thread
// pool. Weights stay in their storage format (GGUF blocks, f16, bf16, f32) and are used in place.
#pragma once

#include <memory>

#include "kernels/backend.h"
#include "kernels/cpu/matmul.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {

class CpuBackend : public Backend {
 public:
  // num_threads <= 0: one per core. kReference dequantizes weights to f32 for every product (the
  // oracle the fast integer path is tested against).
  CpuBackend(int num_threads, MatmulPath matmul_path);

  std::string name() const override;
  Device device() const override { return Device::kCpu; }
  ThreadPool& pool() { return pool_; }
  MatmulPath matmul_path() const { return matmul_path_; }

  Tensor alloc(DType dtype, std::vector<int64_t> shape) override;
  Tensor prepare_weight(const Tensor& host_weight) override { return host_weight; }
  std::unique_ptr<StepMetadata> prepare_step(const ForwardBatch& batch) override;

  void embedding(const Tensor& table, const StepMetadata& step, Tensor& out) override;
  void gather_rows(const Tensor& src, const std::vector<int32_t>& rows, Tensor& out) override;
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
  void relu(const Tensor& x, Tensor& out) override;
  void gelu_tanh(const Tensor& x, Tensor& out) override;
  void add(const Tensor& a, Tensor& b) override;
  void scale(Tensor& x, float factor) override;
  void softcap(Tensor& x, float cap) override;
  void attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                 const StepMetadata& step, const AttentionParams& params, Tensor& out) override;
  std::vector<float> to_host(const Tensor& t) override;
  void copy_blocks(std::vector<KVCacheLayer>& caches,
                   const std::vector<std::pair<int, int>>& src_dst) override;
  ThreadPool* host_pool() override { return &pool_; }

 private:
  ThreadPool pool_;
  MatmulPath matmul_path_;
};

}  // namespace cvllm::cpu
