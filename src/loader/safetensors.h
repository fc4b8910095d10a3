// safetensors reader: one file (SafetensorsFile) and a checkpoint's set of files, sharded or not
// (SafetensorsCheckpoint). Files are memory-mapped; tensor data stays in the map.
//
// Layout: u64 little-endian header length N, N bytes of UTF-8 JSON, then the data section. The
// JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]} (byte offsets
// within the data section); an optional "__metadata__" maps strings to strings.
// Every field is checked before use, so a corrupt file is a cvllm::Error "<file>: <problem>":
// the header length (at most kSafetensorsMaxHeaderBytes, inside the file), JSON syntax and nesting
// depth, each entry's keys and types, the dtype (F32, F16 and BF16 are supported; any other is
// named in the error), the shape (at most kSafetensorsMaxDims non-negative dims, element and byte
// counts that do not overflow), end - begin == elements * element size, ranges inside the data
// section and not overlapping each other. Data need not be aligned for its element type (the
// safetensors format does not promise it); readers that need alignment copy (HfWeightSource).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "loader/checkpoint_file.h"
#include "loader/sharded_checkpoint.h"
#include "tensor/dtype.h"

namespace cvllm {

inline constexpr uint64_t kSafetensorsMaxHeaderBytes = uint64_t{100} << 20;
inline constexpr size_t kSafetensorsMaxDims = 8;

struct SafetensorsTensorInfo {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first, as PyTorch
  uint64_t begin = 0;          // byte range [begin, end) within the data section
  uint64_t end = 0;
  int64_t num_elements() const;
};

class SafetensorsFile : public CheckpointFile<SafetensorsFile, SafetensorsTensorInfo> {
 public:
  // Tensors (tensors()) are in data-offset order. Pointer to a tensor's bytes inside the buffer
  // (bounds were checked at parse time):
  const uint8_t* tensor_data(const SafetensorsTensorInfo& info) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  friend class CheckpointFile<SafetensorsFile, SafetensorsTensorInfo>;
  SafetensorsFile() = default;
  void parse_all();

  size_t data_offset_ = 0;  // start of the data section: 8 + header length
  std::map<std::string, std::string> metadata_;
};

// All safetensors weights of a checkpoint directory: the shards named by
// `model.safetensors.index.json`, or else the single `model.safetensors` (loader/sharded_checkpoint.h).
struct SafetensorsFormat {
  using File = SafetensorsFile;
  using TensorInfo = SafetensorsTensorInfo;
  static constexpr const char* kSingleName = "model.safetensors";
  static constexpr const char* kIndexName = "model.safetensors.index.json";
};
using SafetensorsCheckpoint = ShardedCheckpoint<SafetensorsFormat>;

}  // namespace cvllm
