// Logging to stderr with a process-wide level set from -q / -v. Messages are composed
// first and written with one call, so lines from several threads never interleave, and a
// progress bar being drawn is cleared first and redrawn on its next update.
#pragma once

#include <sstream>
#include <string>
#include <utility>

namespace common {

enum class LogLevel : int { quiet = 0, normal = 1, verbose = 2, debug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
/// -q gives quiet, each -v one step more.
LogLevel log_level_from_flags(bool quiet, int verbose_count);

/// Writes one line to stderr ("warning: " etc. prefix included in `line`).
void log_line(const std::string& line);

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream s;
  (s << ... << std::forward<Args>(args));
  return s.str();
}
}  // namespace detail

template <class... Args>
void log_info(Args&&... args) {
  if (log_level() >= LogLevel::normal) log_line(detail::concat(std::forward<Args>(args)...));
}
template <class... Args>
void log_verbose(Args&&... args) {
  if (log_level() >= LogLevel::verbose) log_line(detail::concat(std::forward<Args>(args)...));
}

}  // namespace common
