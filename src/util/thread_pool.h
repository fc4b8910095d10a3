// A fixed pool of worker threads for data-parallel kernels. `parallel_for` splits [0, n) into one
// contiguous range per thread, runs them (the calling thread takes the first) and returns when all
// are done. Workers spin briefly between jobs before sleeping, because a decode step issues
// hundreds of small jobs and a futex wake-up per job would cost more than the work; they yield
// while spinning so an oversubscribed machine still makes progress.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace cvllm {

// A non-owning reference to a callable: no allocation per job (std::function would allocate for
// lambdas that capture more than a pointer or two).
template <typename Signature>
class FunctionRef;

template <typename R, typename... Args>
class FunctionRef<R(Args...)> {
 public:
  template <typename F, typename = std::enable_if_t<!std::is_same_v<std::decay_t<F>, FunctionRef>>>
  FunctionRef(F&& f)  // NOLINT: implicit by design
      : object_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, Args... args) -> R {
          return (*static_cast<std::remove_reference_t<F>*>(o))(std::forward<Args>(args)...);
        }) {}
  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

class ThreadPool {
 public:
  // num_threads <= 0 means one per available core (or CVLLM_NUM_THREADS).
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // fn(begin, end, thread_index) over a split of [0, n). Ranges are aligned to `grain` items
  // (the last may be shorter). Not reentrant: call only from one thread at a time.
  void parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t, int)> fn, int64_t grain = 1);

  // fn(thread_index) once on every thread.
  void run_on_all(FunctionRef<void(int)> fn);

  static int default_num_threads();

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  FunctionRef<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> num_sleeping_{0};
  std::exception_ptr worker_error_;  // first exception a worker threw in the current job
};

}  // namespace cvllm
