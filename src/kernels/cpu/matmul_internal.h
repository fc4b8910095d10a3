// Internals shared by matmul.cpp and the per-ISA kernel files (matmul_avx2.cpp,
// matmul_avx512.cpp): the quantized-activation layout, how each weight type maps onto the integer
// kernels, and the table of kernels one ISA provides. Not for use outside kernels/cpu.
//
// The integer kernels see every quantized weight type in one canonical form. A row is split into
// sub-blocks of S elements (S = 16 or 32); element i of sub-block j has an unsigned 8-bit code
// u[i] and dequantizes to
//     w[i] = ws[j] * (u[i] - offset) + mw[j]
// where offset is 0 or a power of two (1 << offset_shift) and mw is 0 for types without a min.
// With activations a[i] = da * q[i] (q int8, da per 32 elements) the product over a sub-block is
//     ws[j] * da * (sum(u*q) - offset * sum(q)) + mw[j] * (da * sum(q))
// in which sum(u*q) is one u8 x s8 integer dot product (VNNI vpdpbusd) and everything else comes
// precomputed with the activations. Per type:
//     Q4_0  S=32 u=nibble        offset 8            Q4_K  S=32 u=nibble   ws=d*sc  mw=-dmin*m
//     Q4_1  S=32 u=nibble        mw=m                Q5_K  S=32 u=5 bits   ws=d*sc  mw=-dmin*m
//     Q5_0  S=32 u=5 bits        offset 16           Q2_K  S=16 u=2 bits   ws=d*sc  mw=-dmin*m
//     Q5_1  S=32 u=5 bits        mw=m                Q3_K  S=16 u=q+4      ws=d*sc  offset 4
//     Q8_0  S=32 u=q+128         offset 128          Q6_K  S=16 u=6 bits   ws=d*sc  offset 32
//     Q8_K  S=32 u=q+128         offset 128 (d shared by its 8 sub-blocks)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "tensor/dtype.h"

namespace cvllm::cpu::internal {

struct QuantScheme {
  int sub_block;     // S: 16 or 32
  int offset_shift;  // offset = 1 << offset_shift; 0 means no offset
  bool has_min;
};

// The scheme of a quantized weight type, or false if the integer kernels do not handle it.
bool quant_scheme(DType dtype, QuantScheme* scheme);

// One token's quantized activations, in one 64-byte aligned row of `act_row_bytes` bytes:
//   qs    int8  [cols]      the values
//   da    float [cols/S]    scale of the 32-block holding sub-block j
//   sa    float [cols/S]    da * sum(q over sub-block j)
//   nsum  int32 [cols/S]    -sum(q over sub-block j)
//   lsum  int32 [cols/4]    -sum(q[4k..4k+3]); only written when `with_lane_sums`
// Every array starts 64-byte aligned and is padded to 64 bytes, so a kernel may read a whole
// 64-byte vector at any valid start.
struct ActLayout {
  int64_t cols;
  int sub_block;
  size_t da_offset;
  size_t sa_offset;
  size_t nsum_offset;
  size_t lsum_offset;
  size_t row_bytes;
};
ActLayout act_layout(int64_t cols, int sub_block);

struct ActRow {
  const int8_t* qs;
  const float* da;
  const float* sa;
  const int32_t* nsum;
  const int32_t* lsum;
};
inline ActRow act_row(const ActLayout& l, const uint8_t* base, int64_t token) {
  const uint8_t* row = base + static_cast<size_t>(token) * l.row_bytes;
  return {reinterpret_cast<const int8_t*>(row), reinterpret_cast<const float*>(row + l.da_offset),
          reinterpret_cast<const float*>(row + l.sa_offset),
          reinterpret_cast<const int32_t*>(row + l.nsum_offset),
          reinterpret_cast<const int32_t*>(row + l.lsum_offset)};
}

// Quantizes one token row x[cols] into `row` (layout `l`). Every ISA's version writes the same
// bytes (same formulas, round half to even), so the ISAs differ only in f32 summation order.
using QuantizeRowFn = void (*)(const float* x, const ActLayout& l, bool with_lane_sums,
                               uint8_t* row);
void quantize_act_row_scalar(const float* x, const ActLayout& l, bool with_lane_sums, uint8_t* row);

// A matmul of quantized weights against quantized activations.
struct QuantJob {
  DType dtype;
  QuantScheme scheme;
  const uint8_t* w;  // [rows, row_bytes]
  size_t row_bytes;
  int64_t rows;
  int64_t cols;
  ActLayout act;
  const uint8_t* act_base;  // [num_tokens, act.row_bytes]
  int64_t num_tokens;
  float* y;  // [num_tokens, rows]
};

// A matmul of F32/F16/BF16 weights against f32 activations.
struct FloatJob {
  DType dtype;
  const uint8_t* w;  // [rows, row_bytes]
  size_t row_bytes;
  int64_t rows;
  int64_t cols;
  const float* x;  // [num_tokens, cols]
  int64_t num_tokens;
  float* y;  // [num_tokens, rows]
};

// What one ISA provides. Each kernel computes y[t][r] for r in [r0, r1), t in [t0, t1) and
// writes nothing else. y[t][r] depends only on weight row r and token t's activations: not on the
// ranges, on num_tokens, or on which of the ISA's kernels (few-token or many-token, any register
// block) computes it, because they all add a (row, token)'s products in the one order of f32
// operations the ISA's file states. So any split of the work and any batch give the same bits.
struct KernelSet {
  QuantizeRowFn quantize_row;
  void (*matmul_q)(const QuantJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
  void (*matmul_f)(const FloatJob& job, int64_t r0, int64_t r1, int64_t t0, int64_t t1);
  int64_t row_grain;        // rows per task are a multiple of this (the kernels' row tile)
  int64_t gemv_max_tokens;  // up to this many tokens the kernels stream weights (GEMV style)
  bool reads_lane_sums;     // matmul_q reads ActRow::lsum (else it need not be written)
};

const KernelSet& scalar_kernels();
const KernelSet& avx2_kernels();
const KernelSet& avx512_kernels();

// Grows on demand and keeps its memory, so a hot path reuses one allocation across calls.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { ::operator delete (data_, std::align_val_t{64}); }
  uint8_t* get(size_t bytes) {
    if (bytes > capacity_) {
      ::operator delete (data_, std::align_val_t{64});
      capacity_ = (bytes + 4095) & ~size_t{4095};
      data_ = static_cast<uint8_t*>(::operator new (capacity_, std::align_val_t{64}));
    }
    return data_;
  }

 private:
  uint8_t* data_ = nullptr;
  size_t capacity_ = 0;
};

}  // namespace cvllm::cpu::internal
