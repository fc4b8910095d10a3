// GGUF reader (versions 2 and 3). The whole file is memory-mapped; metadata is parsed into values,
// tensor data stays in the map and is addressed in place.
//
// Layout (little-endian): magic "GGUF", u32 version, u64 tensor_count, u64 metadata_kv_count,
// metadata key/values, tensor infos, padding to `general.alignment` (default 32), tensor data.
// Every count, length, offset and size read from the file is checked against the file's size
// before use: a corrupt or truncated file is a cvllm::Error that names the file and the problem.
// Also rejected: versions other than 2 and 3, unknown value or tensor types, duplicate keys or
// tensor names, tensors with 0 or more than 4 dimensions, element or byte counts that overflow
// int64, a first dimension that is not a whole number of blocks, data offsets that are not
// multiples of the alignment, tensor data outside the file or overlapping another tensor's, and a
// `general.alignment` that is not a nonzero power of two. Empty (0-element) tensors are allowed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tensor/dtype.h"

namespace cvllm {

class MappedFile;

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// Limits of the format as readers enforce them: ggml's GGML_MAX_DIMS, and a nesting bound for
// arrays of arrays so a crafted file cannot make the parser recurse without end.
inline constexpr uint32_t kGgufMaxDims = 4;
inline constexpr int kGgufMaxArrayDepth = 8;
inline constexpr size_t kGgufDefaultAlignment = 32;
// Each metadata value costs ~100 bytes in memory however small its encoding, so the total number
// of values (array elements included) is capped: a corrupt length inside a multi-GB file must not
// become tens of GB. Real files stay far below (a 262k vocabulary with scores and types: ~0.8M).
inline constexpr uint64_t kGgufMaxMetadataValues = uint64_t{1} << 23;

// Lowercase names as in the GGUF spec: "uint8", "float32", "string", "array", ...
std::string_view gguf_value_type_name(GgufValueType type);

// One metadata value. Integers of any width are held in `int_value` (a uint64 above INT64_MAX
// wraps there) and, when non-negative, in `uint_value`, which is exact for every unsigned type;
// the typed getters below hide this. Floats of both widths are in `float_value`. Arrays hold their
// element type and elements; arrays of arrays nest (at most kGgufMaxArrayDepth levels).
struct GgufValue {
  GgufValueType type = GgufValueType::kUint8;
  int64_t int_value = 0;
  uint64_t uint_value = 0;
  double float_value = 0.0;
  bool bool_value = false;
  std::string string_value;
  GgufValueType array_type = GgufValueType::kUint8;
  std::vector<GgufValue> array;

  bool is_integer() const;
  bool is_float() const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the innermost (contiguous) dimension
  DType dtype = DType::kF32;
  uint64_t offset = 0;   // from the start of the tensor data section
  size_t num_bytes = 0;  // whole blocks of `dtype`; shape[0] is a multiple of its block size
  int64_t num_elements() const;
};

class GgufFile {
 public:
  // Maps and parses a file. Throws cvllm::Error "<path>: <problem>" on any malformed input.
  static std::shared_ptr<GgufFile> open(const std::string& path);
  // Parses a buffer the caller keeps alive (tests, fuzzing). `name` is used in error messages.
  static std::shared_ptr<GgufFile> parse(const uint8_t* data, size_t size, const std::string& name);

  const std::string& path() const { return name_; }
  uint32_t version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }

  // Metadata in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* find(std::string_view key) const;

  // Typed getters: nullopt when the key is absent; cvllm::Error naming the key when it is present
  // with an incompatible type (any integer type converts to another if the value fits).
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<int64_t> get_int(std::string_view key) const;
  std::optional<double> get_float(std::string_view key) const;  // accepts integers too
  std::optional<bool> get_bool(std::string_view key) const;
  std::optional<std::vector<std::string>> get_string_array(std::string_view key) const;
  std::optional<std::vector<int64_t>> get_int_array(std::string_view key) const;
  std::optional<std::vector<float>> get_float_array(std::string_view key) const;  // ints too

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  // Pointer to a tensor's bytes inside the mapped file (bounds were checked at parse time).
  const uint8_t* tensor_data(const GgufTensorInfo& info) const;

 private:
  // Heterogeneous lookup, so find(string_view) needs no temporary std::string.
  struct StringHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using NameIndex = std::unordered_map<std::string, size_t, StringHash, std::equal_to<>>;

  GgufFile() = default;
  void parse_all();

  std::shared_ptr<MappedFile> mapping_;  // null when parsing a caller's buffer
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  uint32_t version_ = 0;
  size_t alignment_ = kGgufDefaultAlignment;
  size_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  NameIndex metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  NameIndex tensor_index_;
};

}  // namespace cvllm
