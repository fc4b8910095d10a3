// PyTorch checkpoints written by torch.save (the zip format, PyTorch >= 1.6): one file
// (TorchCheckpointFile), a checkpoint directory's set of files, sharded or not (TorchCheckpoint),
// and their weights as a WeightSource (TorchWeightSource). Files are memory-mapped; tensor data
// stays in the map.
//
// Layout: a zip archive whose entries sit under one folder "<archive>/" (the file's stem, or
// "archive"): "data.pkl" (the pickled state dict), "data/<key>" (one storage per key: raw
// little-endian elements), "byteorder" ("little"; absent in older files), "version" and a few
// other small entries we do not need. PyTorch stores every entry uncompressed and pads the local
// headers so data is 64-byte aligned, which is what lets tensors be used in place.
//
// data.pkl is read by our own restricted unpickler: it understands exactly what torch.save writes
// for a state dict -- dicts and collections.OrderedDict (its _metadata attribute is skipped),
// torch._utils._rebuild_tensor_v2 / _rebuild_parameter, persistent ids
// ("storage", torch.<Type>Storage, key, location, numel), tuples, lists, strings, ints, floats,
// bools and None -- and nothing is ever called: any other global (os.system, builtins.eval, ...)
// is an Error naming it. Tensors must be contiguous row-major views inside their storage (any
// storage offset); several tensors may share a storage (tied weights).
//
// Every field is checked before use, so a corrupt file is a cvllm::Error "<file>: <problem>": the
// zip end records (zip64 included), every central-directory entry against its local header,
// entries stored (not compressed or encrypted) and inside the file, the pickle's opcodes, stack,
// memo and sizes (at most kTorchMaxPickleBytes), storage sizes against the pickle's element counts,
// shapes, strides and offsets. The pre-1.6 (non-zip) format is an Error saying so. CRC-32s are not
// verified (the data is used in place, never read whole).
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

#include "loader/checkpoint_file.h"
#include "loader/hf_weight_source.h"
#include "loader/sharded_checkpoint.h"
#include "loader/weight_source.h"
#include "tensor/dtype.h"

namespace cvllm {

inline constexpr uint64_t kTorchMaxPickleBytes = uint64_t{16} << 20;
inline constexpr size_t kTorchMaxZipEntries = size_t{1} << 20;
inline constexpr size_t kTorchMaxDims = 8;

struct TorchTensorInfo {
  std::string name;
  // nullopt for storage types that are listed but cannot be loaded (int64 position_ids buffers,
  // bool masks, doubles): asking for such a tensor is an Error naming its type.
  std::optional<DType> dtype;
  std::string storage_type;    // "FloatStorage", "LongStorage", ...
  std::string storage_key;     // the storage's entry is "<archive>/data/<storage_key>"
  std::vector<int64_t> shape;  // outermost first
  int64_t storage_offset = 0;  // in elements
  uint64_t file_offset = 0;    // byte range [file_offset, file_offset + num_bytes) of the file
  uint64_t num_bytes = 0;
  int64_t num_elements() const;
};

class TorchCheckpointFile : public CheckpointFile<TorchCheckpointFile, TorchTensorInfo> {
 public:
  // Tensors (tensors()) are in the pickle's order. Pointer to a tensor's first byte inside the
  // buffer (bounds were checked at parse time):
  const uint8_t* tensor_data(const TorchTensorInfo& info) const { return data_ + info.file_offset; }

 private:
  friend class CheckpointFile<TorchCheckpointFile, TorchTensorInfo>;
  TorchCheckpointFile() = default;
  void parse_all();
};

// All torch weights of a checkpoint directory: the shards named by
// `pytorch_model.bin.index.json`, or else the single `pytorch_model.bin`
// (loader/sharded_checkpoint.h).
struct TorchCheckpointFormat {
  using File = TorchCheckpointFile;
  using TensorInfo = TorchTensorInfo;
  static constexpr const char* kSingleName = "pytorch_model.bin";
  static constexpr const char* kIndexName = "pytorch_model.bin.index.json";
};
using TorchCheckpoint = ShardedCheckpoint<TorchCheckpointFormat>;

// Weights of a torch checkpoint under the GGUF-style names models ask for (the same name maps as
// HfWeightSource). Tensors are views into the mapped files in their stored dtype; a tensor whose
// data is not aligned to its element size is copied instead.
class TorchWeightSource : public WeightSource {
 public:
  TorchWeightSource(std::shared_ptr<const TorchCheckpoint> checkpoint, HfWeightNameMap name_map);
  std::string path() const override;
  // Throws Error for a tensor whose storage type cannot be loaded (see TorchTensorInfo::dtype).
  std::optional<Tensor> find(const std::string& name) const override;
  std::string display_name(const std::string& name) const override;
  const TorchCheckpoint& checkpoint() const { return *checkpoint_; }

 private:
  std::shared_ptr<const TorchCheckpoint> checkpoint_;
  HfWeightNameMap name_map_;
};

}  // namespace cvllm
