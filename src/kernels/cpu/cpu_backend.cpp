#include "kernels/cpu/cpu_backend.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/dequantize.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rotary.h"
#include "util/error.h"

namespace cvllm::cpu {
namespace {

void check_f32(const Tensor& t, const char* what) {
  CVLLM_CHECK(t.dtype() == DType::kF32, what, " must be f32, got ", t.describe());
}

int64_t rows_of(const Tensor& t) { return t.numel() / t.dim(-1); }

}  // namespace

CpuBackend::CpuBackend(int num_threads, MatmulPath matmul_path)
    : pool_(num_threads), matmul_path_(matmul_path) {}

std::string CpuBackend::name() const {
  return cat("cpu (", pool_.num_threads(), " threads, ",
             matmul_path_ == MatmulPath::kFast ? std::string("fast ") + std::string(active_isa())
                                               : std::string("reference"),
             " kernels)");
}

Tensor CpuBackend::alloc(DType dtype, std::vector<int64_t> shape) {
  return Tensor::empty(dtype, std::move(shape));
}

std::unique_ptr<StepMetadata> CpuBackend::prepare_step(const ForwardBatch& batch) {
  CVLLM_CHECK(batch.fed_rows.empty(), "the CPU backend draws no tokens on a device to feed");
  auto step = std::make_unique<StepMetadata>();
  step->batch = &batch;
  return step;
}

void CpuBackend::embedding(const Tensor& table, const StepMetadata& step, Tensor& out) {
  gather_rows(table, step.batch->input_ids, out);
}

void CpuBackend::gather_rows(const Tensor& src, const std::vector<int32_t>& rows, Tensor& out) {
  check_f32(out, "gather output");
  int64_t num_rows = src.dim(0);
  int64_t width = src.dim(-1);
  size_t row_bytes = row_size(src.dtype(), width);
  CVLLM_CHECK(out.numel() == static_cast<int64_t>(rows.size()) * width, "gather output ",
              out.describe(), " does not fit ", rows.size(), " rows of ", width);
  const uint8_t* base = static_cast<const uint8_t*>(src.data());
  float* dst = out.data_as<float>();
  for (size_t i = 0; i < rows.size(); ++i) {
    CVLLM_CHECK(rows[i] >= 0 && rows[i] < num_rows, "row id ", rows[i], " out of range [0, ",
                num_rows, ")");
    dequantize_row(src.dtype(), base + rows[i] * row_bytes, dst + i * width, width);
  }
}

void CpuBackend::linear(const Tensor& x, const Tensor& w, const Tensor* bias, Tensor& y) {
  check_f32(x, "linear input");
  check_f32(y, "linear output");
  int64_t num_tokens = rows_of(x);
  CVLLM_CHECK(w.ndim() == 2 && x.dim(-1) == w.dim(1) && y.dim(-1) == w.dim(0) &&
                  rows_of(y) == num_tokens,
              "linear shapes: x ", x.describe(), " w ", w.describe(), " y ", y.describe());
  WeightView view{w.data(), w.dtype(), w.dim(0), w.dim(1)};
  matmul(view, x.data_as<float>(), num_tokens, y.data_as<float>(), pool_, matmul_path_);
  if (bias != nullptr) {
    const float* b = bias->data_as<float>();
    float* out = y.data_as<float>();
    int64_t n = w.dim(0);
    for (int64_t t = 0; t < num_tokens; ++t) {
      for (int64_t i = 0; i < n; ++i) out[t * n + i] += b[i];
    }
  }
}

void CpuBackend::linear_many(const Tensor& x, std::span<const Tensor* const> ws,
                             std::span<Tensor* const> ys) {
  check_f32(x, "linear input");
  CVLLM_CHECK(ws.size() == ys.size() && ws.size() <= static_cast<size_t>(kMaxMatmulWeights),
              "linear_many takes 1..", kMaxMatmulWeights, " weight/output pairs");
  int64_t num_tokens = rows_of(x);
  WeightView views[kMaxMatmulWeights];
  float* outs[kMaxMatmulWeights];
  for (size_t i = 0; i < ws.size(); ++i) {
    const Tensor& w = *ws[i];
    CVLLM_CHECK(w.ndim() == 2 && x.dim(-1) == w.dim(1) && ys[i]->dim(-1) == w.dim(0) &&
                    rows_of(*ys[i]) == num_tokens,
                "linear_many shapes: x ", x.describe(), " w ", w.describe(), " y ", ys[i]->describe());
    check_f32(*ys[i], "linear output");
    views[i] = WeightView{w.data(), w.dtype(), w.dim(0), w.dim(1)};
    outs[i] = ys[i]->data_as<float>();
  }
  matmul_many(std::span<const WeightView>(views, ws.size()), x.data_as<float>(), num_tokens,
              std::span<float* const>(outs, ws.size()), pool_, matmul_path_);
}

void CpuBackend::rms_norm(const Tensor& x, const Tensor& w, float eps, Tensor& y,
                          float weight_offset) {
  check_f32(w, "norm weight");
  cpu::rms_norm(x.data_as<float>(), w.data_as<float>(), y.data_as<float>(), rows_of(x),
                x.dim(-1), eps, &pool_, weight_offset);
}

void CpuBackend::add_rms_norm(const Tensor& x, Tensor& residual, const Tensor& w, float eps,
                              Tensor& y, float weight_offset) {
  check_f32(w, "norm weight");
  cpu::add_rms_norm(x.data_as<float>(), residual.data_as<float>(), w.data_as<float>(),
                    y.data_as<float>(), rows_of(x), x.dim(-1), eps, &pool_, weight_offset);
}

void CpuBackend::layer_norm(const Tensor& x, const Tensor& w, const Tensor* bias, float eps,
                            Tensor& y) {
  cpu::layer_norm(x.data_as<float>(), w.data_as<float>(), bias ? bias->data_as<float>() : nullptr,
                  y.data_as<float>(), rows_of(x), x.dim(-1), eps, &pool_);
}

void CpuBackend::rotary(Tensor& q, Tensor& k, const StepMetadata& step, const RopeParams& rope) {
  int64_t num_tokens = step.batch->num_tokens();
  if (num_tokens == 0) return;  // nothing to rotate, and the head counts below would divide by 0
  int64_t num_heads = q.numel() / (num_tokens * rope.head_size);
  int64_t num_kv_heads = k.numel() / (num_tokens * rope.head_size);
  apply_rotary(q.data_as<float>(), k.data_as<float>(), step.batch->positions.data(), num_tokens,
               num_heads, num_kv_heads, rope.head_size, rope.rot_dim, rope.inv_freq,
               rope.style == RopeStyle::kNeox ? RopeLayout::kNeox : RopeLayout::kInterleaved,
               rope.mscale, &pool_);
}

void CpuBackend::silu_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  cpu::silu_mul(gate.data_as<float>(), up.data_as<float>(), out.data_as<float>(), rows_of(gate),
                gate.dim(-1), &pool_);
}

void CpuBackend::gelu_tanh_mul(const Tensor& gate, const Tensor& up, Tensor& out) {
  cpu::gelu_tanh_mul(gate.data_as<float>(), up.data_as<float>(), out.data_as<float>(),
                     rows_of(gate), gate.dim(-1), &pool_);
}

void CpuBackend::relu(const Tensor& x, Tensor& out) {
  CVLLM_CHECK(x.numel() == out.numel(), "relu: ", x.describe(), " vs ", out.describe());
  cpu::relu(x.data_as<float>(), out.data_as<float>(), x.numel(), &pool_);
}

void CpuBackend::gelu_tanh(const Tensor& x, Tensor& out) {
  CVLLM_CHECK(x.numel() == out.numel(), "gelu_tanh: ", x.describe(), " vs ", out.describe());
  cpu::gelu_tanh(x.data_as<float>(), out.data_as<float>(), x.numel(), &pool_);
}

void CpuBackend::scale(Tensor& x, float factor) {
  float* p = x.data_as<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] *= factor;
}

void CpuBackend::softcap(Tensor& x, float cap) {
  CVLLM_CHECK(cap > 0.0f, "softcap needs a positive cap, got ", cap);
  float* p = x.data_as<float>();
  for (int64_t i = 0; i < x.numel(); ++i) p[i] = cap * std::tanh(p[i] / cap);
}

void CpuBackend::add(const Tensor& a, Tensor& b) {
  CVLLM_CHECK(a.numel() == b.numel(), "add: ", a.describe(), " vs ", b.describe());
  const float* pa = a.data_as<float>();
  float* pb = b.data_as<float>();
  for (int64_t i = 0; i < a.numel(); ++i) pb[i] += pa[i];
}

void CpuBackend::attention(const Tensor& q, const Tensor& k, const Tensor& v, KVCacheLayer& cache,
                           const StepMetadata& step, const AttentionParams& p, Tensor& out) {
  const ForwardBatch& b = *step.batch;
  write_kv_cache(k.data_as<float>(), v.data_as<float>(), cache.k.data(), cache.v.data(),
                 cache.k.dtype(), b.slot_mapping.data(), b.num_tokens(), p.num_kv_heads,
                 p.head_size, cache.block_size, &pool_);
  AttentionShape shape;
  shape.num_heads = p.num_heads;
  shape.num_kv_heads = p.num_kv_heads;
  shape.head_size = p.head_size;
  shape.block_size = cache.block_size;
  shape.scale = p.scale;
  shape.logit_softcap = p.logit_softcap;
  shape.sliding_window = p.sliding_window;
  paged_attention(q.data_as<float>(), cache.k.data(), cache.v.data(), cache.k.dtype(),
                  out.data_as<float>(), b.query_start_loc.data(), b.seq_lens.data(),
                  b.block_table.data(), b.max_blocks_per_req, b.num_reqs(), shape, &pool_);
}

void CpuBackend::copy_blocks(std::vector<KVCacheLayer>& caches,
                             const std::vector<std::pair<int, int>>& src_dst) {
  for (KVCacheLayer& layer : caches) {
    for (Tensor* t : {&layer.k, &layer.v}) {
      // Both layouts keep each block's elements contiguous (attention.h).
      size_t block_bytes = t->nbytes() / static_cast<size_t>(t->dim(0));
      uint8_t* base = static_cast<uint8_t*>(t->data());
      for (const auto& [src, dst] : src_dst) {
        CVLLM_CHECK(src >= 0 && dst >= 0 && src < t->dim(0) && dst < t->dim(0), "bad block copy ", src, " -> ", dst);
        std::memcpy(base + dst * block_bytes, base + src * block_bytes, block_bytes);
      }
    }
  }
}

std::vector<float> CpuBackend::to_host(const Tensor& t) {
  check_f32(t, "to_host");
  const float* p = t.data_as<float>();
  return std::vector<float>(p, p + t.numel());
}

}  // namespace cvllm::cpu
