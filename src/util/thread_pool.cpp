#include "util/thread_pool.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CVLLM_CPU_RELAX() _mm_pause()
#else
#define CVLLM_CPU_RELAX() ((void)0)
#endif

namespace cvllm {
namespace {

// How long an idle worker spins before it sleeps. Long enough to bridge the gap between the
// kernels of one forward pass, short enough not to burn a core between requests.
constexpr auto kSpinDuration = std::chrono::microseconds(2000);

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
    auto spin_start = std::chrono::steady_clock::now();
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen) {
      CVLLM_CPU_RELAX();
      if (++spins % 1024 == 0 && std::chrono::steady_clock::now() - spin_start > kSpinDuration) {
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

void ThreadPool::run_on_all(const std::function<void(int)>& fn) {
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
  while (pending_.load(std::memory_order_acquire) != 0) CVLLM_CPU_RELAX();
  job_ = nullptr;
  if (!error && worker_error_) error = std::exchange(worker_error_, nullptr);
  worker_error_ = nullptr;
  if (error) std::rethrow_exception(error);
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn,
                              int64_t grain) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  int64_t num_grains = (n + grain - 1) / grain;
  int workers = static_cast<int>(std::min<int64_t>(num_threads_, num_grains));
  if (workers <= 1) {
    fn(0, n, 0);
    return;
  }
  run_on_all([&](int t) {
    if (t >= workers) return;
    int64_t g0 = num_grains * t / workers;
    int64_t g1 = num_grains * (t + 1) / workers;
    int64_t begin = g0 * grain;
    int64_t end = std::min(n, g1 * grain);
    if (begin < end) fn(begin, end, t);
  });
}

}  // namespace cvllm
