#include "common/thread_pool.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace common {

namespace {
thread_local int t_region_depth = 0;
thread_local const ThreadPool* t_worker_of = nullptr;  // the pool this thread works for

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Spin iterations before sleeping: a few tens of microseconds, which covers the gap between
// consecutive kernels of a decode step without burning a core when the pool is idle.
constexpr int kSpinIterations = 4000;
}  // namespace

bool ThreadPool::runs_inline_here() const {
  return workers_.empty() || t_region_depth > 0 || t_worker_of == this;
}

ThreadPool::ThreadPool(std::size_t n_threads) {
  if (n_threads == 0) n_threads = std::max(1u, std::thread::hardware_concurrency());
  workers_.reserve(n_threads - 1);
  for (std::size_t i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  bump_epoch();
  for (auto& t : workers_) t.join();
  // Workers drain the queue before they see stop_, so every submitted task has run.
}

void ThreadPool::bump_epoch() {
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  epoch_.notify_all();
}

bool ThreadPool::try_pop(std::function<void()>& task) {
  std::lock_guard<std::mutex> lock(queue_mutex_);
  if (queue_.empty()) return false;
  task = std::move(queue_.front());
  queue_.pop_front();
  return true;
}

void ThreadPool::run_region_part(std::size_t thread_index) {
  ++t_region_depth;
  try {
    (*region_fn_)(thread_index);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!region_error_) region_error_ = std::current_exception();
  }
  --t_region_depth;
}

void ThreadPool::worker_loop(std::size_t thread_index) {
  t_worker_of = this;
  std::uint64_t seen_gen = 0;
  for (;;) {
    std::uint64_t epoch = epoch_.load(std::memory_order_acquire);
    std::uint64_t gen = region_gen_.load(std::memory_order_acquire);
    if (gen != seen_gen) {
      seen_gen = gen;
      run_region_part(thread_index);
      if (region_pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) region_pending_.notify_one();
      continue;
    }
    std::function<void()> task;
    if (try_pop(task)) {
      task();  // packaged_task stores its exception in the future
      continue;
    }
    if (stop_.load(std::memory_order_acquire)) return;
    int spins = 0;
    while (epoch_.load(std::memory_order_acquire) == epoch && spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    }
    if (spins == kSpinIterations) epoch_.wait(epoch, std::memory_order_acquire);
  }
}

void ThreadPool::run_on_all(RegionFn fn) {
  if (runs_inline_here()) {
    // Nested, called from one of this pool's own tasks, or single-threaded: every
    // "thread" part runs here, in order (waiting on the workers could deadlock).
    for (std::size_t i = 0; i < size(); ++i) fn(i);
    return;
  }
  std::lock_guard<std::mutex> region_lock(region_mutex_);
  region_fn_ = &fn;
  region_error_ = nullptr;
  region_pending_.store(workers_.size(), std::memory_order_relaxed);
  region_gen_.fetch_add(1, std::memory_order_release);
  bump_epoch();
  run_region_part(0);
  int spins = 0;
  for (;;) {
    std::size_t pending = region_pending_.load(std::memory_order_acquire);
    if (pending == 0) break;
    if (spins < kSpinIterations) {
      cpu_relax();
      ++spins;
    } else {
      region_pending_.wait(pending, std::memory_order_acquire);
    }
  }
  region_fn_ = nullptr;
  if (region_error_) {
    std::exception_ptr e = region_error_;
    region_error_ = nullptr;
    std::rethrow_exception(e);
  }
}

}  // namespace common
