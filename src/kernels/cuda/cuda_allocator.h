// DeviceAllocator: a caching allocator for device memory. Activations are re-allocated every
// forward pass; cudaMalloc/cudaFree per op would synchronize the device and dominate small
// steps, so freed blocks go to a free list keyed by size class and are handed out again.
//
// Safety with one stream: memory released by the host while kernels that use it are still queued
// is only ever reused by work queued later on the same stream, so the reuse is ordered after them.
#pragma once

#include <cstddef>
#include <memory>
#include <map>
#include <mutex>
#include <vector>

namespace cvllm::cuda {

class DeviceAllocator : public std::enable_shared_from_this<DeviceAllocator> {
 public:
  // graph_pool: the pool of recorded CUDA graphs' temporaries. A request takes the smallest
  // cached block that holds it, of any size class (smaller graphs, recorded after larger ones,
  // reuse their blocks), and cached blocks are never freed before the pool is: recorded graphs
  // still point at them. Otherwise a request takes only a block of its own size class, and an
  // allocation that fails frees the cache and retries.
  static std::shared_ptr<DeviceAllocator> create(bool graph_pool = false) {
    return std::shared_ptr<DeviceAllocator>(new DeviceAllocator(graph_pool));
  }
  ~DeviceAllocator();

  // At least `bytes` of device memory (256-byte aligned, contents undefined), returned to the cache
  // when the last copy of the pointer is released. bytes == 0 gives a null pointer.
  std::shared_ptr<void> allocate(size_t bytes);
  size_t cached_bytes() const;
  size_t in_use_bytes() const;
  // The most in use at once since the last reset_peak() (or creation).
  size_t peak_in_use_bytes() const;
  void reset_peak();

  // Requests are rounded up to a size class (4 per power of two below 64 MiB, 2 MiB steps above),
  // so at most a quarter is wasted and repeated shapes hit the cache.
  static size_t size_class(size_t bytes);

 private:
  explicit DeviceAllocator(bool graph_pool) : graph_pool_(graph_pool) {}
  void give_back(void* ptr, size_t size);
  // Frees every cached (unused) block: on a failed allocation (not in a graph pool, whose cached
  // blocks recorded graphs still point at) and at destruction.
  void release_cached();

  const bool graph_pool_;
  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  size_t cached_bytes_ = 0;
  size_t in_use_bytes_ = 0;
  size_t peak_in_use_bytes_ = 0;
};

}  // namespace cvllm::cuda
