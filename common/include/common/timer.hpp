// Monotonic time (steady_clock): never goes backwards, unaffected by wall-clock changes.
#pragma once

#include <chrono>
#include <cstdint>

namespace common {

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class Stopwatch {
 public:
  Stopwatch() : start_ns_(now_ns()) {}
  void reset() { start_ns_ = now_ns(); }
  std::int64_t elapsed_ns() const { return now_ns() - start_ns_; }
  double elapsed_ms() const { return static_cast<double>(elapsed_ns()) * 1e-6; }
  double elapsed_s() const { return static_cast<double>(elapsed_ns()) * 1e-9; }

 private:
  std::int64_t start_ns_;
};

}  // namespace common
