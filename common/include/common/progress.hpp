// A progress bar on stderr for long work. It draws only when stderr is a terminal and the
// log level is not quiet, so it never mixes into piped output or --json on stdout.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace common {

bool stderr_is_tty();

class ProgressBar {
 public:
  /// `enabled` defaults to: stderr is a TTY and the log level is not quiet.
  ProgressBar(std::string label, std::uint64_t total);
  ProgressBar(std::string label, std::uint64_t total, bool enabled);
  ~ProgressBar();
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  /// Thread-safe; redraws at most ~10 times a second.
  void advance(std::uint64_t n = 1);
  /// Draws the final state and ends the line. Called by the destructor if not before.
  void finish();
  bool enabled() const { return enabled_; }
  std::uint64_t done() const { return done_.load(std::memory_order_relaxed); }

  /// The text of one frame, without control characters (exposed for tests).
  static std::string render(const std::string& label, std::uint64_t done, std::uint64_t total,
                            double elapsed_s, int width);

 private:
  void draw(bool final);
  std::string label_;
  std::uint64_t total_;
  bool enabled_;
  std::atomic<std::uint64_t> done_{0};
  std::int64_t start_ns_;
  std::atomic<std::int64_t> last_draw_ns_{0};
  std::mutex draw_mutex_;
  bool finished_ = false;
};

namespace detail {
// The terminal line a progress bar occupies; log_line clears it before writing.
std::mutex& stderr_mutex();
bool& progress_line_dirty();
}  // namespace detail

}  // namespace common
