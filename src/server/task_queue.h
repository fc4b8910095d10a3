// The worker pool behind the HTTP server. httplib serves each connection on one pool thread for
// the connection's whole life (keep-alive waits and SSE streams included), so the pool must grow
// to the number of concurrent connections: 1,000 streaming clients need 1,000 threads. This pool
// starts small, adds a thread whenever a connection arrives and none is idle (up to
// `max_threads`; beyond that connections wait in the queue), and lets threads above `min_threads`
// exit after sitting idle for a while.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

namespace cvllm::server {

class GrowingThreadPool : public httplib::TaskQueue {
 public:
  // `peak` (optional) is kept at the most threads alive at once.
  GrowingThreadPool(size_t min_threads, size_t max_threads, std::atomic<size_t>* peak = nullptr,
                    std::chrono::milliseconds idle_exit = std::chrono::seconds(30));
  ~GrowingThreadPool() override;

  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

  size_t num_threads() const;
  size_t peak_threads() const;
  size_t num_queued() const;

 private:
  void spawn_locked();
  void worker(uint64_t id);
  void reap(std::vector<std::thread>& out);

  const size_t min_threads_;
  const size_t max_threads_;
  const std::chrono::milliseconds idle_exit_;
  mutable std::mutex mutex_;
  std::condition_variable cond_;
  std::deque<std::function<void()>> jobs_;
  std::unordered_map<uint64_t, std::thread> threads_;
  std::vector<uint64_t> exited_;  // ids of threads that left; joined by the next enqueue
  uint64_t next_id_ = 0;
  size_t num_idle_ = 0;
  size_t peak_ = 0;
  std::atomic<size_t>* peak_out_;
  bool shutdown_ = false;
};

}  // namespace cvllm::server
