// Element types. Values of the GGUF block types equal their GGUF `ggml_type` ids, so a GGUF tensor
// header converts with a range check. A "block" type stores `block_size` elements in `type_size`
// bytes; plain types have block_size 1.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cvllm {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct DTypeTraits {
  std::string_view name;  // as GGUF tools print it: "f32", "q4_1", "q6_K"
  int64_t block_size;     // elements per block
  int64_t type_size;      // bytes per block
  bool is_quantized;
};

// Traits of a known type; nullopt for ids we do not know (removed or newer GGUF types).
std::optional<DTypeTraits> dtype_traits(uint32_t ggml_type_id);
const DTypeTraits& traits(DType dtype);

inline std::string_view dtype_name(DType dtype) { return traits(dtype).name; }

// Bytes for a row of n elements; n must be a multiple of the block size (checked by callers that
// parse outside data; asserted here).
size_t row_size(DType dtype, int64_t n);

}  // namespace cvllm
