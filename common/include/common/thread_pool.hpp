// A thread pool passed explicitly to whoever needs it (no global instance).
//
// Two kinds of work:
// - parallel_for / run_on_all: fork-join over the pool's threads, the calling thread
//   taking part as thread 0. Workers spin briefly before sleeping, so the many small
//   parallel regions of a decode loop do not pay a futex wake-up each.
// - submit: an independent task on a queue, its result or exception in a std::future.
// An exception thrown by any part of a parallel region is rethrown in the caller once
// every thread has left the region (the first one wins; the rest are dropped).
#pragma once

#include <atomic>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace common {

/// A non-owning reference to a callable taking (std::size_t): two pointers, never
/// allocates. The callable must outlive the reference (a parallel region's body does).
class RegionFn {
 public:
  template <class F>
    requires(!std::is_same_v<std::remove_cvref_t<F>, RegionFn> && std::is_invocable_v<F&, std::size_t>)
  RegionFn(F&& fn)  // NOLINT(google-explicit-constructor): lambdas convert implicitly
      : obj_(const_cast<void*>(static_cast<const void*>(std::addressof(fn)))),
        call_([](void* obj, std::size_t i) { (*static_cast<std::remove_reference_t<F>*>(obj))(i); }) {}
  void operator()(std::size_t i) const { call_(obj_, i); }

 private:
  void* obj_;
  void (*call_)(void*, std::size_t);
};

class ThreadPool {
 public:
  /// `n_threads` counts the caller: n_threads - 1 workers are started. 0 means one thread
  /// per hardware thread.
  explicit ThreadPool(std::size_t n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  /// Threads taking part in a parallel region (workers + the caller).
  std::size_t size() const { return workers_.size() + 1; }

  /// Runs fn(thread_index) once on every thread, thread_index in [0, size()).
  /// A region started from inside a region (nesting) runs on the calling thread only.
  /// Nothing is allocated: fn is referenced, not copied.
  void run_on_all(RegionFn fn);

  /// Calls fn(begin_i, end_i) over [begin, end) in chunks of at most `grain` items, chunks
  /// claimed dynamically by the threads. Allocates nothing.
  template <class F>
  void parallel_for(std::size_t begin, std::size_t end, std::size_t grain, F&& fn) {
    if (end <= begin) return;
    if (grain == 0) grain = 1;
    const std::size_t n_chunks = (end - begin + grain - 1) / grain;
    if (n_chunks == 1 || runs_inline_here()) {
      for (std::size_t b = begin; b < end; b += grain) fn(b, b + grain < end ? b + grain : end);
      return;
    }
    std::atomic<std::size_t> next{0};
    std::atomic<bool> failed{false};
    run_on_all([&](std::size_t) {
      for (;;) {
        if (failed.load(std::memory_order_relaxed)) return;
        std::size_t c = next.fetch_add(1, std::memory_order_relaxed);
        if (c >= n_chunks) return;
        std::size_t b = begin + c * grain;
        std::size_t e = b + grain < end ? b + grain : end;
        try {
          fn(b, e);
        } catch (...) {
          failed.store(true, std::memory_order_relaxed);
          throw;
        }
      }
    });
  }

  /// Queues a task; its result (or exception) arrives through the future.
  template <class F>
  auto submit(F&& fn) -> std::future<std::invoke_result_t<F>> {
    using R = std::invoke_result_t<F>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::forward<F>(fn));
    std::future<R> result = task->get_future();
    if (workers_.empty()) {
      (*task)();  // no worker to hand it to: run it now
      return result;
    }
    {
      std::lock_guard<std::mutex> lock(queue_mutex_);
      queue_.emplace_back([task] { (*task)(); });
    }
    bump_epoch();
    return result;
  }

  /// True where a region would run on the calling thread alone: a single-thread pool,
  /// inside a region, or on one of this pool's workers (running a submitted task).
  bool runs_inline_here() const;

 private:
  void worker_loop(std::size_t thread_index);
  void bump_epoch();
  void run_region_part(std::size_t thread_index);
  bool try_pop(std::function<void()>& task);

  std::vector<std::thread> workers_;
  std::mutex region_mutex_;  // one parallel region at a time per pool

  // Region state, published by a release store of region_gen_.
  const RegionFn* region_fn_ = nullptr;
  std::atomic<std::uint64_t> region_gen_{0};
  std::atomic<std::size_t> region_pending_{0};
  std::mutex error_mutex_;
  std::exception_ptr region_error_;

  std::mutex queue_mutex_;
  std::deque<std::function<void()>> queue_;

  std::atomic<std::uint64_t> epoch_{0};  // bumped on any new work or stop; workers wait on it
  std::atomic<bool> stop_{false};
};

}  // namespace common
