#include "tensor/tensor.h"

#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

#include "util/error.h"

namespace cvllm {
namespace {

constexpr size_t kLargeAllocationBytes = size_t{1} << 22;

}  // namespace

Tensor Tensor::view(void* data, DType dtype, std::vector<int64_t> shape, Device device) {
  Tensor t;
  t.data_ = data;
  t.dtype_ = dtype;
  t.device_ = device;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::view(const void* data, DType dtype, std::vector<int64_t> shape, Device device) {
  // Weights mapped read-only are handed out as const views; kernels never write through them.
  return view(const_cast<void*>(data), dtype, std::move(shape), device);
}

Tensor Tensor::adopt(void* data, DType dtype, std::vector<int64_t> shape, Device device,
                     std::shared_ptr<void> owner) {
  Tensor t = view(data, dtype, std::move(shape), device);
  t.owner_ = std::move(owner);
  return t;
}

Tensor Tensor::empty(DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  size_t bytes = t.nbytes();
  size_t padded = (bytes + 63) / 64 * 64;
  if (padded >= kLargeAllocationBytes) {
    // Large buffers (the KV cache) come straight from the kernel: page-aligned and zero-filled
    // lazily, so unused capacity costs no physical memory and no start-up time.
    void* mem = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) throw Error(cat("out of memory mapping ", bytes, " bytes"));
    t.data_ = mem;
    t.owner_ = std::shared_ptr<void>(mem, [padded](void* p) { ::munmap(p, padded); });
    return t;
  }
  void* mem = padded == 0 ? nullptr : std::aligned_alloc(64, padded);
  if (padded != 0 && mem == nullptr) throw Error(cat("out of memory allocating ", bytes, " bytes"));
  if (mem) std::memset(mem, 0, padded);
  t.data_ = mem;
  t.owner_ = std::shared_ptr<void>(mem, [](void* p) { std::free(p); });
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

size_t Tensor::nbytes() const {
  if (shape_.empty()) return traits(dtype_).type_size;
  int64_t inner = shape_.back();
  int64_t outer = numel() / (inner == 0 ? 1 : inner);
  if (inner == 0) return 0;
  return static_cast<size_t>(outer) * row_size(dtype_, inner);
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  CVLLM_CHECK(!shape_.empty() && begin >= 0 && begin <= end && end <= shape_[0],
              "bad row slice [", begin, ", ", end, ") of ", describe());
  size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / static_cast<size_t>(shape_[0]);
  Tensor t = *this;
  t.data_ = static_cast<uint8_t*>(data_) + static_cast<size_t>(begin) * row_bytes;
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::reshape(std::vector<int64_t> shape) const {
  Tensor t = *this;
  t.shape_ = std::move(shape);
  CVLLM_CHECK(t.numel() == numel(), "cannot reshape ", describe(), " to ", t.describe());
  return t;
}

std::string Tensor::describe() const {
  std::string s(dtype_name(dtype_));
  s += "[";
  for (size_t i = 0; i < shape_.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape_[i]);
  }
  return s + "]";
}

}  // namespace cvllm
