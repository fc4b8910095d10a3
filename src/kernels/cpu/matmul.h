// Matrix multiplication against weights in any supported dtype: y = x · W^T. The hot path of CPU
// inference. Weights stay in their GGUF block format; two paths:
//  - kReference: each weight row dequantized to f32 (kernels/cpu/dequantize.h), dotted in f32.
//    What transformers computes; the oracle for the fast path.
//  - kFast: activations quantized once per call to 8-bit blocks (kernels/cpu/quantize.h), integer
//    SIMD dot products against the weight blocks (AVX-512 VNNI, AVX2, or plain C++), the f32 scales
//    applied per block. F32/F16/BF16 weights use f32 FMA instead.
// The ISA is picked at run time (kernels/cpu/cpu_features.h). Work is split over the pool's
// threads by output rows. Batch invariance: for a given ISA and path, row t of y depends only on
// x[t] and W, bit for bit: not on num_tokens, on t's position in the batch, nor on the number of
// threads. (So a request's greedy text does not change with server load: the next layer
// re-quantizes activations, which would amplify 1-ulp differences.)
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "kernels/cpu/cpu_features.h"
#include "tensor/dtype.h"
#include "util/thread_pool.h"

namespace cvllm::cpu {

enum class MatmulPath { kReference, kFast };

// A weight matrix [rows, cols], row-major; each row is cols/block_size whole blocks.
struct WeightView {
  const void* data;
  DType dtype;
  int64_t rows;  // out_features
  int64_t cols;  // in_features
};

// y[num_tokens, rows] = x[num_tokens, cols] · W^T; x and y f32, row-major, contiguous. Supports
// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K weights;
// others throw cvllm::Error. num_tokens == 0 does nothing.
void matmul(const WeightView& w, const float* x, int64_t num_tokens, float* y, ThreadPool& pool,
            MatmulPath path = MatmulPath::kFast);

// Several weights with the same input (q/k/v, gate/up): ys[i][num_tokens, weights[i].rows] =
// x · weights[i]^T. Same results as one matmul() per weight, but the activations are quantized
// once and all rows are split over the threads in one pass (one synchronization instead of one
// per weight, which matters for decode). All weights must have the same cols; at most
// kMaxMatmulWeights of them.
constexpr int kMaxMatmulWeights = 8;
void matmul_many(std::span<const WeightView> weights, const float* x, int64_t num_tokens,
                 std::span<float* const> ys, ThreadPool& pool, MatmulPath path = MatmulPath::kFast);

}  // namespace cvllm::cpu
