#include "common/log.hpp"

#include <atomic>
#include <cstdio>

#include "common/progress.hpp"

namespace common {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::normal)};
}

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level), std::memory_order_relaxed); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load(std::memory_order_relaxed)); }

LogLevel log_level_from_flags(bool quiet, int verbose_count) {
  if (quiet) return LogLevel::quiet;
  int level = static_cast<int>(LogLevel::normal) + verbose_count;
  if (level > static_cast<int>(LogLevel::debug)) level = static_cast<int>(LogLevel::debug);
  return static_cast<LogLevel>(level);
}

void log_line(const std::string& line) {
  std::lock_guard<std::mutex> lock(detail::stderr_mutex());
  std::string out;
  if (detail::progress_line_dirty()) {
    out = "\r\033[K";  // clear the progress bar; it redraws on its next update
    detail::progress_line_dirty() = false;
  }
  out += line;
  out += '\n';
  std::fwrite(out.data(), 1, out.size(), stderr);
  std::fflush(stderr);
}

}  // namespace common
