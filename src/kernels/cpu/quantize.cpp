#include "kernels/cpu/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/matmul_internal.h"
#include "tensor/half.h"
#include "util/error.h"

namespace cvllm::cpu {
namespace {

float abs_max(const float* x, int n) {
  float amax = 0.0f;
  for (int j = 0; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

// The activation scale of a 32-block and its inverse. Every ISA computes exactly these two IEEE
// operations, so all ISAs quantize to the same bytes.
inline void act_scale(float amax, float* d, float* id) {
  *d = amax / 127.0f;
  *id = *d != 0.0f ? 1.0f / *d : 0.0f;
}

// x * id rounded half to even (the SIMD conversions' default rounding), clamped to [-127, 127].
inline int8_t act_quant(float x, float id) {
  const float r = std::nearbyint(x * id);
  return static_cast<int8_t>(std::clamp(r, -127.0f, 127.0f));
}

}  // namespace

void quantize_row_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  CVLLM_CHECK(n % kQK8_0 == 0, "quantize_row_q8_0: n=", n, " is not a multiple of ", kQK8_0);
  for (int64_t i = 0; i < n / kQK8_0; ++i, x += kQK8_0) {
    const float d = abs_max(x, kQK8_0) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = f32_to_f16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  }
}

void quantize_row_q8_1(const float* x, BlockQ8_1* y, int64_t n) {
  CVLLM_CHECK(n % kQK8_1 == 0, "quantize_row_q8_1: n=", n, " is not a multiple of ", kQK8_1);
  for (int64_t i = 0; i < n / kQK8_1; ++i, x += kQK8_1) {
    const float d = abs_max(x, kQK8_1) / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      sum += y[i].qs[j];
    }
    y[i].d = f32_to_f16(d);
    y[i].s = f32_to_f16(static_cast<float>(sum) * d);
  }
}

void quantize_row_q8_k(const float* x, BlockQ8_K* y, int64_t n) {
  CVLLM_CHECK(n % kQK_K == 0, "quantize_row_q8_k: n=", n, " is not a multiple of ", kQK_K);
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    // The scale maps the element of largest magnitude, with its sign, to -127.
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    std::memset(y[i].bsums, 0, sizeof(y[i].bsums));
    if (amax == 0.0f) {
      y[i].d = 0.0f;
      std::memset(y[i].qs, 0, sizeof(y[i].qs));
      continue;
    }
    const float iscale = -127.0f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = static_cast<int>(std::nearbyint(iscale * x[j]));
      y[i].qs[j] = static_cast<int8_t>(std::min(127, v));
      y[i].bsums[j / 16] = static_cast<int16_t>(y[i].bsums[j / 16] + y[i].qs[j]);
    }
    y[i].d = 1.0f / iscale;
  }
}

void round_trip_q8_activations(const float* x, float* out, int64_t n) {
  CVLLM_CHECK(n % 32 == 0, "round_trip_q8_activations: n=", n, " is not a multiple of 32");
  for (int64_t b = 0; b < n; b += 32) {
    float d, id;
    act_scale(abs_max(x + b, 32), &d, &id);
    for (int j = 0; j < 32; ++j) out[b + j] = d * static_cast<float>(act_quant(x[b + j], id));
  }
}

namespace internal {

ActLayout act_layout(int64_t cols, int sub_block) {
  auto align = [](size_t v) { return (v + 63) & ~size_t{63}; };
  ActLayout l{};
  l.cols = cols;
  l.sub_block = sub_block;
  const size_t n = static_cast<size_t>(cols);
  l.da_offset = align(n);
  l.sa_offset = l.da_offset + align(n / sub_block * sizeof(float));
  l.nsum_offset = l.sa_offset + align(n / sub_block * sizeof(float));
  l.lsum_offset = l.nsum_offset + align(n / sub_block * sizeof(int32_t));
  l.row_bytes = l.lsum_offset + align(n / 4 * sizeof(int32_t));
  return l;
}

void quantize_act_row_scalar(const float* x, const ActLayout& l, bool with_lane_sums,
                             uint8_t* row) {
  auto* qs = reinterpret_cast<int8_t*>(row);
  auto* da = reinterpret_cast<float*>(row + l.da_offset);
  auto* sa = reinterpret_cast<float*>(row + l.sa_offset);
  auto* nsum = reinterpret_cast<int32_t*>(row + l.nsum_offset);
  auto* lsum = reinterpret_cast<int32_t*>(row + l.lsum_offset);
  const int s = l.sub_block;
  for (int64_t b = 0; b < l.cols; b += 32) {
    float d, id;
    act_scale(abs_max(x + b, 32), &d, &id);
    for (int j = 0; j < 32; ++j) qs[b + j] = act_quant(x[b + j], id);
    for (int64_t j = b / s; j < (b + 32) / s; ++j) {
      int sum = 0;
      for (int i = 0; i < s; ++i) sum += qs[j * s + i];
      da[j] = d;
      sa[j] = d * static_cast<float>(sum);
      nsum[j] = -sum;
    }
    if (with_lane_sums) {
      for (int64_t k = b / 4; k < (b + 32) / 4; ++k) {
        lsum[k] = -(qs[4 * k] + qs[4 * k + 1] + qs[4 * k + 2] + qs[4 * k + 3]);
      }
    }
  }
}

}  // namespace internal
}  // namespace cvllm::cpu
