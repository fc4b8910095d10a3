// A fixed pool of worker threads for data-parallel kernels. `parallel_for` splits [0, n) into one
// contiguous range per thread, runs them (the calling thread takes the first) and returns when all
// are done. Workers spin briefly between jobs before sleeping, because a decode step issues
// hundreds of small jobs and a futex wake-up per job would cost more than the work.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace cvllm {

class ThreadPool {
 public:
  // num_threads <= 0 means one per available core.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // fn(begin, end, thread_index) over a split of [0, n). Ranges are aligned to `grain` items
  // (the last may be shorter). Not reentrant: call only from one thread at a time.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                    int64_t grain = 1);

  // fn(thread_index) once on every thread.
  void run_on_all(const std::function<void(int)>& fn);

  static int default_num_threads();

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> num_sleeping_{0};
  std::exception_ptr worker_error_;  // first exception a worker threw in the current job
};

}  // namespace cvllm
