// Tensor: a typed, shaped view of memory on one device, optionally owning its buffer. No autograd,
// no graph: kernels take raw pointers, layers pass Tensors. Shapes are outermost-first (row-major):
// a weight matrix is [rows = out_features, cols = in_features]; block-quantized dtypes store each
// row as whole blocks, so only the innermost dimension is blocked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "tensor/dtype.h"

namespace cvllm {

enum class Device { kCpu, kCuda };

class Tensor {
 public:
  Tensor() = default;
  // A view of memory owned elsewhere (e.g. an mmap'd model file).
  static Tensor view(void* data, DType dtype, std::vector<int64_t> shape, Device device = Device::kCpu);
  static Tensor view(const void* data, DType dtype, std::vector<int64_t> shape,
                     Device device = Device::kCpu);
  // Host memory owned by the tensor, 64-byte aligned, zero-initialized.
  static Tensor empty(DType dtype, std::vector<int64_t> shape);
  // Memory kept alive by `owner` (a backend's device allocation, freed when the last view dies).
  static Tensor adopt(void* data, DType dtype, std::vector<int64_t> shape, Device device,
                      std::shared_ptr<void> owner);

  void* data() const { return data_; }
  template <typename T>
  T* data_as() const { return static_cast<T*>(data_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t dim(int i) const { return shape_.at(i < 0 ? shape_.size() + i : i); }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t numel() const;
  size_t nbytes() const;

  // A view of rows [begin, end) of the outermost dimension.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  // Same memory, new shape with the same number of elements.
  Tensor reshape(std::vector<int64_t> shape) const;

  std::string describe() const;  // "f32[3, 576]"

 private:
  void* data_ = nullptr;
  DType dtype_ = DType::kF32;
  Device device_ = Device::kCpu;
  std::vector<int64_t> shape_;
  std::shared_ptr<void> owner_;  // keeps owned memory alive across copies of the view
};

}  // namespace cvllm
