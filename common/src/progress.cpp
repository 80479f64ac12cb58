#include "common/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "common/log.hpp"
#include "common/timer.hpp"

namespace common {

namespace detail {
std::mutex& stderr_mutex() {
  static std::mutex m;
  return m;
}
bool& progress_line_dirty() {
  static bool dirty = false;
  return dirty;
}
}  // namespace detail

bool stderr_is_tty() { return ::isatty(STDERR_FILENO) == 1; }

ProgressBar::ProgressBar(std::string label, std::uint64_t total)
    : ProgressBar(std::move(label), total, stderr_is_tty() && log_level() >= LogLevel::normal) {}

ProgressBar::ProgressBar(std::string label, std::uint64_t total, bool enabled)
    : label_(std::move(label)), total_(total), enabled_(enabled), start_ns_(now_ns()) {}

ProgressBar::~ProgressBar() { finish(); }

static std::string fmt_seconds(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.1fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", static_cast<int>(s) / 3600, (static_cast<int>(s) / 60) % 60);
  return buf;
}

std::string ProgressBar::render(const std::string& label, std::uint64_t done, std::uint64_t total,
                                double elapsed_s, int width) {
  done = total > 0 ? std::min(done, total) : done;
  double frac = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
  std::string bar;
  if (width > 0) {
    int filled = static_cast<int>(frac * width + 1e-9);
    bar.push_back('[');
    bar.append(static_cast<std::size_t>(filled), '#');
    bar.append(static_cast<std::size_t>(width - filled), '.');
    bar.append("] ");
  }
  char buf[128];
  std::snprintf(buf, sizeof buf, "%llu/%llu %3d%% %s", static_cast<unsigned long long>(done),
                static_cast<unsigned long long>(total), static_cast<int>(frac * 100.0),
                fmt_seconds(elapsed_s).c_str());
  std::string out = label + " " + bar + buf;
  if (done > 0 && done < total) {
    double eta = elapsed_s / static_cast<double>(done) * static_cast<double>(total - done);
    out += " eta " + fmt_seconds(eta);
  }
  return out;
}

void ProgressBar::advance(std::uint64_t n) {
  done_.fetch_add(n, std::memory_order_relaxed);
  if (!enabled_) return;
  std::int64_t now = now_ns();
  std::int64_t last = last_draw_ns_.load(std::memory_order_relaxed);
  if (now - last < 100'000'000) return;  // ~10 frames per second
  if (!last_draw_ns_.compare_exchange_strong(last, now)) return;
  draw(false);
}

void ProgressBar::draw(bool final) {
  std::lock_guard<std::mutex> own(draw_mutex_);
  if (finished_) return;
  finished_ = final;
  double elapsed = static_cast<double>(now_ns() - start_ns_) * 1e-9;
  std::string frame = "\r\033[K" + render(label_, done(), total_, elapsed, 30);
  if (final) frame += '\n';
  std::lock_guard<std::mutex> lock(detail::stderr_mutex());
  std::fwrite(frame.data(), 1, frame.size(), stderr);
  std::fflush(stderr);
  detail::progress_line_dirty() = !final;
}

void ProgressBar::finish() {
  if (!enabled_) return;
  draw(true);
}

}  // namespace common
