#include "util/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CVLLM_CPU_RELAX() _mm_pause()
#else
#define CVLLM_CPU_RELAX() ((void)0)
#endif

namespace cvllm {
namespace {

// An idle worker spins (pausing) for a short while, then keeps polling but yields its core to
// other runnable threads, then sleeps. The first phase bridges the gaps between the kernels of
// one forward pass; the second keeps latency low without starving other processes.
constexpr int kPauseSpins = 4096;
constexpr auto kYieldDuration = std::chrono::milliseconds(2);

// Waits until pred() holds, spinning then yielding. Used by the caller for the workers to finish.
template <typename Pred>
void spin_until(Pred&& pred) {
  for (int i = 0; !pred(); ++i) {
    if (i < kPauseSpins) {
      CVLLM_CPU_RELAX();
    } else {
      sched_yield();
    }
  }
}

}  // namespace

int ThreadPool::default_num_threads() {
  if (const char* env = std::getenv("CVLLM_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

ThreadPool::ThreadPool(int num_threads)
    : num_threads_(num_threads > 0 ? num_threads : default_num_threads()) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  uint64_t seen = 0;
  while (true) {
    int spins = 0;
    auto yield_start = std::chrono::steady_clock::time_point{};
    while (generation_.load(std::memory_order_acquire) == seen) {
      if (++spins < kPauseSpins) {
        CVLLM_CPU_RELAX();
        continue;
      }
      if (spins == kPauseSpins) yield_start = std::chrono::steady_clock::now();
      sched_yield();
      if (spins % 64 == 0 && std::chrono::steady_clock::now() - yield_start > kYieldDuration) {
        std::unique_lock<std::mutex> lock(mutex_);
        num_sleeping_.fetch_add(1);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
        num_sleeping_.fetch_sub(1);
        break;
      }
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    try {
      (*job_)(index);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!worker_error_) worker_error_ = std::current_exception();
    }
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::run_on_all(FunctionRef<void(int)> fn) {
  if (num_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(num_threads_ - 1, std::memory_order_release);
  {
    // Taking the lock orders the generation bump against a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (num_sleeping_.load() > 0) wake_.notify_all();
  std::exception_ptr error;
  try {
    fn(0);
  } catch (...) {
    error = std::current_exception();
  }
  spin_until([&] { return pending_.load(std::memory_order_acquire) == 0; });
  job_ = nullptr;
  if (!error && worker_error_) error = worker_error_;
  worker_error_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(int64_t n, FunctionRef<void(int64_t, int64_t, int)> fn,
                              int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t num_grains = (n + grain - 1) / grain;
  int workers = static_cast<int>(std::min<int64_t>(num_threads_, num_grains));
  if (workers <= 1) {
    fn(0, n, 0);
    return;
  }
  auto body = [&](int t) {
    if (t >= workers) return;
    int64_t g0 = num_grains * t / workers;
    int64_t g1 = num_grains * (t + 1) / workers;
    int64_t begin = g0 * grain;
    int64_t end = std::min(n, g1 * grain);
    if (begin < end) fn(begin, end, t);
  };
  run_on_all(body);
}

}  // namespace cvllm
