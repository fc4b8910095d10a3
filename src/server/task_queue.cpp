#include "server/task_queue.h"

#include "util/logging.h"

namespace cvllm::server {

GrowingThreadPool::GrowingThreadPool(size_t min_threads, size_t max_threads,
                                     std::atomic<size_t>* peak, std::chrono::milliseconds idle_exit)
    : min_threads_(min_threads),
      max_threads_(std::max(max_threads, min_threads)),
      idle_exit_(idle_exit),
      peak_out_(peak) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (size_t i = 0; i < min_threads_; ++i) spawn_locked();
}

GrowingThreadPool::~GrowingThreadPool() {
  shutdown();
}

void GrowingThreadPool::spawn_locked() {
  uint64_t id = next_id_++;
  threads_.emplace(id, std::thread([this, id] { worker(id); }));
  peak_ = std::max(peak_, threads_.size() - exited_.size());
  if (peak_out_ && peak_out_->load() < peak_) peak_out_->store(peak_);
}

void GrowingThreadPool::reap(std::vector<std::thread>& out) {
  for (uint64_t id : exited_) {
    auto it = threads_.find(id);
    if (it == threads_.end()) continue;
    out.push_back(std::move(it->second));
    threads_.erase(it);
  }
  exited_.clear();
}

void GrowingThreadPool::enqueue(std::function<void()> fn) {
  std::vector<std::thread> finished;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutdown_) return;
    reap(finished);
    jobs_.push_back(std::move(fn));
    // Every queued job needs its own thread: a connection can hold one for minutes.
    if (num_idle_ < jobs_.size() && threads_.size() < max_threads_) {
      try {
        spawn_locked();
      } catch (const std::system_error& e) {
        LOG_WARNING("HTTP worker pool: cannot start another thread (", e.what(), "); ",
                    jobs_.size(), " connections wait");
      }
    }
  }
  cond_.notify_one();
  for (std::thread& t : finished) t.join();
}

void GrowingThreadPool::worker(uint64_t id) {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    ++num_idle_;
    bool woke = cond_.wait_for(lock, idle_exit_, [&] { return shutdown_ || !jobs_.empty(); });
    --num_idle_;
    if (!woke) {
      if (threads_.size() - exited_.size() > min_threads_) break;  // idle too long: leave
      continue;
    }
    if (jobs_.empty()) break;  // shutting down with nothing left
    std::function<void()> job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
  exited_.push_back(id);
}

void GrowingThreadPool::shutdown() {
  std::unordered_map<uint64_t, std::thread> threads;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
    threads.swap(threads_);
    exited_.clear();
  }
  cond_.notify_all();
  for (auto& [id, t] : threads) {
    if (t.joinable()) t.join();
  }
}

size_t GrowingThreadPool::num_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_.size() - exited_.size();
}

size_t GrowingThreadPool::peak_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return peak_;
}

size_t GrowingThreadPool::num_queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return jobs_.size();
}

}  // namespace cvllm::server
