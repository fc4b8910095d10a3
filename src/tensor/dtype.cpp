#include "tensor/dtype.h"

#include "tensor/quant_blocks.h"
#include "util/error.h"

namespace cvllm {
namespace {

struct Entry {
  DType dtype;
  DTypeTraits traits;
};

constexpr Entry kEntries[] = {
    {DType::kF32, {"f32", 1, 4, false}},
    {DType::kF16, {"f16", 1, 2, false}},
    {DType::kQ4_0, {"q4_0", kQK4_0, sizeof(BlockQ4_0), true}},
    {DType::kQ4_1, {"q4_1", kQK4_1, sizeof(BlockQ4_1), true}},
    {DType::kQ5_0, {"q5_0", kQK5_0, sizeof(BlockQ5_0), true}},
    {DType::kQ5_1, {"q5_1", kQK5_1, sizeof(BlockQ5_1), true}},
    {DType::kQ8_0, {"q8_0", kQK8_0, sizeof(BlockQ8_0), true}},
    {DType::kQ8_1, {"q8_1", kQK8_1, sizeof(BlockQ8_1), true}},
    {DType::kQ2_K, {"q2_K", kQK_K, sizeof(BlockQ2_K), true}},
    {DType::kQ3_K, {"q3_K", kQK_K, sizeof(BlockQ3_K), true}},
    {DType::kQ4_K, {"q4_K", kQK_K, sizeof(BlockQ4_K), true}},
    {DType::kQ5_K, {"q5_K", kQK_K, sizeof(BlockQ5_K), true}},
    {DType::kQ6_K, {"q6_K", kQK_K, sizeof(BlockQ6_K), true}},
    {DType::kQ8_K, {"q8_K", kQK_K, sizeof(BlockQ8_K), true}},
    {DType::kI8, {"i8", 1, 1, false}},
    {DType::kI16, {"i16", 1, 2, false}},
    {DType::kI32, {"i32", 1, 4, false}},
    {DType::kI64, {"i64", 1, 8, false}},
    {DType::kF64, {"f64", 1, 8, false}},
    {DType::kBF16, {"bf16", 1, 2, false}},
};

}  // namespace

std::optional<DTypeTraits> dtype_traits(uint32_t ggml_type_id) {
  for (const Entry& e : kEntries) {
    if (static_cast<uint32_t>(e.dtype) == ggml_type_id) return e.traits;
  }
  return std::nullopt;
}

const DTypeTraits& traits(DType dtype) {
  for (const Entry& e : kEntries) {
    if (e.dtype == dtype) return e.traits;
  }
  throw Error(cat("unknown dtype id ", static_cast<uint32_t>(dtype)));
}

size_t row_size(DType dtype, int64_t n) {
  const DTypeTraits& t = traits(dtype);
  CVLLM_CHECK(n % t.block_size == 0, "row of ", n, " elements is not a whole number of ", t.name,
              " blocks");
  return static_cast<size_t>(n / t.block_size * t.type_size);
}

}  // namespace cvllm
