#include "common/thread_pool.hpp"

#include <atomic>
#include <mutex>
#include <numeric>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "test_support.hpp"

using common::ThreadPool;

TEST_CASE("parallel_for visits every index exactly once", "[unit]") {
  const std::size_t threads = GENERATE(1, 2, 3, 8);
  ThreadPool pool(threads);
  CHECK(pool.size() == threads);
  for (std::size_t n : {0u, 1u, 7u, 1000u, 12345u}) {
    for (std::size_t grain : {1u, 3u, 64u, 100000u}) {
      // Catch2 assertions are not thread-safe: count violations, check them after.
      std::vector<std::atomic<int>> hits(n + 5);
      std::atomic<int> bad_chunks{0};
      pool.parallel_for(5, n + 5, grain, [&](std::size_t b, std::size_t e) {
        if (e <= b || e - b > grain) bad_chunks.fetch_add(1);
        for (std::size_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
      REQUIRE(bad_chunks.load() == 0);
      for (std::size_t i = 0; i < 5; ++i) REQUIRE(hits[i].load() == 0);
      for (std::size_t i = 5; i < n + 5; ++i) REQUIRE(hits[i].load() == 1);
    }
  }
}

TEST_CASE("run_on_all runs once on every thread index", "[unit]") {
  ThreadPool pool(4);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::atomic<int>> seen(4);
    pool.run_on_all([&](std::size_t t) { seen[t].fetch_add(1); });
    for (auto& s : seen) REQUIRE(s.load() == 1);
  }
}

TEST_CASE("an exception in a parallel region reaches the caller", "[unit]") {
  ThreadPool pool(3);
  std::atomic<int> ran{0};
  CHECK_THROWS_WITH(pool.parallel_for(0, 1000, 1,
                                      [&](std::size_t b, std::size_t) {
                                        ran.fetch_add(1);
                                        if (b == 500) throw std::runtime_error("chunk 500 failed");
                                      }),
                    "chunk 500 failed");
  CHECK(ran.load() >= 1);
  // The pool stays usable after a failed region.
  std::atomic<int> total{0};
  pool.parallel_for(0, 100, 7, [&](std::size_t b, std::size_t e) { total += static_cast<int>(e - b); });
  CHECK(total.load() == 100);
  CHECK_THROWS_AS(pool.run_on_all([](std::size_t t) {
    if (t == 2) throw std::logic_error("worker 2");
  }),
                  std::logic_error);
}

TEST_CASE("submitted tasks all run and carry results and exceptions", "[unit]") {
  ThreadPool pool(3);
  std::vector<std::future<int>> results;
  for (int i = 0; i < 500; ++i) results.push_back(pool.submit([i] { return i * i; }));
  long sum = 0;
  for (auto& f : results) sum += f.get();
  long expect = 0;
  for (int i = 0; i < 500; ++i) expect += i * i;
  CHECK(sum == expect);

  auto bad = pool.submit([]() -> int { throw std::runtime_error("task failed"); });
  CHECK_THROWS_WITH(bad.get(), "task failed");
}

TEST_CASE("the destructor runs every queued task first", "[unit]") {
  std::atomic<int> done{0};
  {
    ThreadPool pool(2);
    for (int i = 0; i < 100; ++i) pool.submit([&] { done.fetch_add(1); });
  }
  CHECK(done.load() == 100);
}

TEST_CASE("nested regions and regions inside tasks run inline instead of deadlocking", "[unit]") {
  ThreadPool pool(4);
  std::atomic<int> inner{0};
  std::atomic<int> outside{0};
  pool.parallel_for(0, 8, 1, [&](std::size_t, std::size_t) {
    if (!pool.runs_inline_here()) outside.fetch_add(1);
    pool.parallel_for(0, 10, 1, [&](std::size_t b, std::size_t e) { inner += static_cast<int>(e - b); });
  });
  CHECK(inner.load() == 80);
  CHECK(outside.load() == 0);
  CHECK_FALSE(pool.runs_inline_here());

  auto f = pool.submit([&] {
    int sum = 0;
    pool.parallel_for(0, 50, 5, [&](std::size_t b, std::size_t e) { sum += static_cast<int>(e - b); });
    return sum;
  });
  CHECK(f.get() == 50);
}

TEST_CASE("regions from several caller threads are serialised", "[unit]") {
  // Every chunk logs its region (caller, round) when it starts and checks, under a lock, that
  // no chunk of another region is running. Serialised regions never overlap, and each
  // region's chunks form one unbroken run of the log.
  constexpr int kCallers = 4, kRounds = 50;
  constexpr std::size_t kChunks = 16;  // 64 indices, grain 4
  ThreadPool pool(3);
  std::mutex m;
  std::vector<int> log;  // region of each chunk, in start order
  int running_region = -1, running_chunks = 0, overlaps = 0;
  std::atomic<long> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c)
    callers.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        const int region = c * kRounds + r;
        pool.parallel_for(0, 64, 4, [&](std::size_t b, std::size_t e) {
          {
            std::lock_guard<std::mutex> lock(m);
            if (running_chunks > 0 && running_region != region) ++overlaps;
            running_region = region;
            ++running_chunks;
            log.push_back(region);
          }
          total += static_cast<long>(e - b);
          std::this_thread::yield();  // widen the window in which an overlap would show
          std::lock_guard<std::mutex> lock(m);
          --running_chunks;
        });
      }
    });
  for (auto& t : callers) t.join();
  CHECK(overlaps == 0);
  CHECK(total.load() == long{kCallers} * kRounds * 64);
  REQUIRE(log.size() == kCallers * kRounds * kChunks);
  std::set<int> finished;
  std::size_t broken_runs = 0;
  for (std::size_t i = 0; i < log.size(); i += kChunks) {
    const int region = log[i];
    for (std::size_t j = i; j < i + kChunks; ++j) broken_runs += log[j] != region;
    finished.insert(region);
  }
  CHECK(broken_runs == 0);
  CHECK(finished.size() == std::size_t{kCallers} * kRounds);  // every region ran, each once
}
