// A Hugging Face checkpoint folder's weights: one file (model.safetensors, pytorch_model.bin), or
// shards listed by an index whose weight_map names the shard of every tensor
// (model.safetensors.index.json, pytorch_model.bin.index.json). Shards must sit next to the index
// (plain file names only) and hold the tensors the index says they do.
//
// ShardedCheckpoint<Format> serves both formats; Format supplies:
//   using File = ...;        // static std::shared_ptr<File> open(path); find_tensor(name) ->
//                            // const TensorInfo*; tensors(); path()
//   using TensorInfo = ...;  // has `name`
//   static constexpr const char* kSingleName, *kIndexName;
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace cvllm {

// JSON nested at most this deep (outside strings), so a hostile file cannot drive the recursive
// parser deep; safetensors headers and index files use it.
inline constexpr int kMaxCheckpointJsonDepth = 16;
// Parses `text` (`what` of `file`, for errors): an Error when it is not JSON or nests too deep.
nlohmann::json parse_checkpoint_json(const std::string& file, std::string_view text,
                                     const char* what);
std::string read_text_file(const std::string& path);
// The (tensor, shard file name) pairs of an index's weight_map, checked: an object with a
// weight_map object of plain file names. Errors name `index_name`.
std::vector<std::pair<std::string, std::string>> read_weight_map(const std::string& index_json,
                                                                 const std::string& index_name);

template <typename Format>
class ShardedCheckpoint {
 public:
  using File = typename Format::File;
  using TensorInfo = typename Format::TensorInfo;
  using ShardLoader = std::function<std::shared_ptr<File>(const std::string&)>;

  static ShardedCheckpoint open_dir(const std::string& dir) {
    namespace fs = std::filesystem;
    const fs::path index = fs::path(dir) / Format::kIndexName;
    const fs::path single = fs::path(dir) / Format::kSingleName;
    std::error_code ec;
    if (fs::is_regular_file(index, ec)) {
      return from_index(read_text_file(index.string()), index.string(),
                        [&](const std::string& shard) { return File::open((fs::path(dir) / shard).string()); });
    }
    if (!fs::is_regular_file(single, ec)) {
      throw Error(cat(dir, ": no ", Format::kSingleName, " or ", Format::kIndexName,
                      " in the directory"));
    }
    ShardedCheckpoint ckpt;
    ckpt.path_ = single.string();
    ckpt.files_.push_back(File::open(single.string()));
    for (const TensorInfo& t : ckpt.files_[0]->tensors()) ckpt.name_to_file_[t.name] = 0;
    return ckpt;
  }

  // Parses an index JSON text; `shard_loader` opens a shard by file name (tests, fuzzing).
  static ShardedCheckpoint from_index(const std::string& index_json, const std::string& index_name,
                                      const ShardLoader& shard_loader) {
    ShardedCheckpoint ckpt;
    ckpt.path_ = index_name;
    std::unordered_map<std::string, size_t> shard_to_file;
    for (const auto& [tensor, shard] : read_weight_map(index_json, index_name)) {
      auto [it, inserted] = shard_to_file.emplace(shard, ckpt.files_.size());
      if (inserted) ckpt.files_.push_back(shard_loader(shard));
      const File& file = *ckpt.files_[it->second];
      if (file.find_tensor(tensor) == nullptr) {
        throw Error(cat(index_name, ": tensor '", tensor, "' is listed in shard '", shard,
                        "', but ", file.path(), " does not contain it"));
      }
      ckpt.name_to_file_[tensor] = it->second;
    }
    return ckpt;
  }

  const std::string& path() const { return path_; }  // the index or the single file
  // The tensor and the file holding it; {nullptr, nullptr} when absent.
  std::pair<const TensorInfo*, const File*> find(std::string_view name) const {
    auto it = name_to_file_.find(std::string(name));
    if (it == name_to_file_.end()) return {nullptr, nullptr};
    const File* file = files_[it->second].get();
    return {file->find_tensor(name), file};
  }
  const std::vector<std::shared_ptr<File>>& files() const { return files_; }
  size_t num_tensors() const { return name_to_file_.size(); }

 private:
  std::string path_;
  std::vector<std::shared_ptr<File>> files_;
  std::unordered_map<std::string, size_t> name_to_file_;  // tensor name -> index in files_
};

}  // namespace cvllm
