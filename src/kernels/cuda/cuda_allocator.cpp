#include "kernels/cuda/cuda_allocator.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "kernels/cuda/cuda_util.h"

namespace cvllm::cuda {

size_t DeviceAllocator::size_class(size_t bytes) {
  constexpr size_t kMin = 512;
  constexpr size_t kLarge = size_t{64} << 20;
  constexpr size_t kLargeStep = size_t{2} << 20;
  if (bytes <= kMin) return kMin;
  if (bytes > kLarge) return (bytes + kLargeStep - 1) / kLargeStep * kLargeStep;
  const int k = 63 - __builtin_clzll(static_cast<unsigned long long>(bytes - 1));  // 2^k < bytes
  const size_t step = (size_t{1} << k) / 4;
  return (bytes + step - 1) / step * step;
}

DeviceAllocator::~DeviceAllocator() { release_cached(); }

std::shared_ptr<void> DeviceAllocator::allocate(size_t bytes) {
  if (bytes == 0) return nullptr;
  size_t size = size_class(bytes);
  void* ptr = nullptr;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = free_.lower_bound(size);
    while (graph_pool_ && it != free_.end() && it->second.empty()) ++it;
    if (it != free_.end() && !it->second.empty() && (graph_pool_ || it->first == size)) {
      size = it->first;
      ptr = it->second.back();
      it->second.pop_back();
      cached_bytes_ -= size;
    }
  }
  if (ptr == nullptr) {
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation && !graph_pool_) {
      // Cached blocks of other sizes may be what stands in the way: free them and retry once.
      cudaGetLastError();
      release_cached();
      err = cudaMalloc(&ptr, size);
    }
    CVLLM_CUDA_CHECK(err);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_use_bytes_ += size;
    peak_in_use_bytes_ = std::max(peak_in_use_bytes_, in_use_bytes_);
  }
  std::shared_ptr<DeviceAllocator> self = shared_from_this();
  return std::shared_ptr<void>(ptr, [self, size](void* p) { self->give_back(p, size); });
}

void DeviceAllocator::give_back(void* ptr, size_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  free_[size].push_back(ptr);
  cached_bytes_ += size;
  in_use_bytes_ -= size;
}

void DeviceAllocator::release_cached() {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    blocks.swap(free_);
    cached_bytes_ = 0;
  }
  // cudaFree synchronizes the device, so no queued kernel still uses these blocks afterwards.
  // Errors are ignored here: this also runs from destructors, possibly after the driver shut down.
  for (auto& [size, ptrs] : blocks) {
    for (void* p : ptrs) cudaFree(p);
  }
}

size_t DeviceAllocator::cached_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cached_bytes_;
}

size_t DeviceAllocator::in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_use_bytes_;
}

size_t DeviceAllocator::peak_in_use_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return peak_in_use_bytes_;
}

void DeviceAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mu_);
  peak_in_use_bytes_ = in_use_bytes_;
}

}  // namespace cvllm::cuda
