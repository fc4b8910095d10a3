// One weights file of a checkpoint format: its bytes (a mapped file, or a caller's buffer for tests
// and fuzzing) and the tensors the format's parser found in them. SafetensorsFile and
// TorchCheckpointFile derive from it (CRTP) and implement parse_all(): fill tensors_ and
// tensor_index_ from data_/size_, throwing cvllm::Error "<name>: <problem>" on malformed input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/mapped_file.h"

namespace cvllm {

template <typename Derived, typename TensorInfo>
class CheckpointFile {
 public:
  // Maps and parses a file.
  static std::shared_ptr<Derived> open(const std::string& path) {
    auto mapping = std::make_shared<MappedFile>(path);
    std::shared_ptr<Derived> f(new Derived());
    f->mapping_ = mapping;
    return read(std::move(f), mapping->data(), mapping->size(), path);
  }
  // Parses a buffer the caller keeps alive. `name` is used in error messages.
  static std::shared_ptr<Derived> parse(const uint8_t* data, size_t size, const std::string& name) {
    return read(std::shared_ptr<Derived>(new Derived()), data, size, name);
  }

  const std::string& path() const { return name_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const {
    auto it = tensor_index_.find(std::string(name));
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
  }

 protected:
  CheckpointFile() = default;

  std::shared_ptr<MappedFile> mapping_;  // null when parsing a caller's buffer
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string name_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;

 private:
  static std::shared_ptr<Derived> read(std::shared_ptr<Derived> f, const uint8_t* data, size_t size,
                                       const std::string& name) {
    f->data_ = data;
    f->size_ = size;
    f->name_ = name;
    f->parse_all();
    return f;
  }
};

}  // namespace cvllm
