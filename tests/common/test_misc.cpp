// log levels, the progress bar, timers, aligned buffers, RSS.
#include <cstring>

#include "common/aligned_buffer.hpp"
#include "common/log.hpp"
#include "common/progress.hpp"
#include "common/rss.hpp"
#include "common/timer.hpp"
#include "test_support.hpp"

TEST_CASE("the -q and -v flags set the log level", "[unit]") {
  using common::LogLevel;
  CHECK(common::log_level_from_flags(false, 0) == LogLevel::normal);
  CHECK(common::log_level_from_flags(false, 1) == LogLevel::verbose);
  CHECK(common::log_level_from_flags(false, 2) == LogLevel::debug);
  CHECK(common::log_level_from_flags(false, 9) == LogLevel::debug);
  CHECK(common::log_level_from_flags(true, 2) == LogLevel::quiet);
  common::set_log_level(LogLevel::verbose);
  CHECK(common::log_level() == LogLevel::verbose);
  common::set_log_level(LogLevel::normal);
}

TEST_CASE("progress frames show count, percent, elapsed and eta", "[unit]") {
  using common::ProgressBar;
  CHECK(ProgressBar::render("search", 0, 10, 0.0, 10) == "search [..........] 0/10   0% 0.0s");
  CHECK(ProgressBar::render("search", 5, 10, 2.0, 10) == "search [#####.....] 5/10  50% 2.0s eta 2.0s");
  CHECK(ProgressBar::render("search", 10, 10, 75.0, 10) == "search [##########] 10/10 100% 1m15s");
  CHECK(ProgressBar::render("x", 12, 10, 1.0, 4) == "x [####] 10/10 100% 1.0s");
  CHECK(ProgressBar::render("x", 3, 0, 1.0, 0) == "x 3/0   0% 1.0s");
}

TEST_CASE("a disabled progress bar counts but draws nothing", "[unit]") {
  common::ProgressBar bar("work", 100, /*enabled=*/false);
  for (int i = 0; i < 100; ++i) bar.advance();
  CHECK(bar.done() == 100);
  CHECK_FALSE(bar.enabled());
  bar.finish();
}

TEST_CASE("the monotonic clock never goes backwards", "[unit]") {
  std::int64_t prev = common::now_ns();
  for (int i = 0; i < 10000; ++i) {
    std::int64_t t = common::now_ns();
    REQUIRE(t >= prev);
    prev = t;
  }
  common::Stopwatch sw;
  CHECK(sw.elapsed_ns() >= 0);
  CHECK(sw.elapsed_s() < 5.0);
}

TEST_CASE("aligned buffers are aligned, zeroed, movable and explicitly copyable", "[unit]") {
  const std::size_t align = GENERATE(16u, 64u, 4096u);
  const std::size_t count = GENERATE(1u, 3u, 1000u, 4097u);
  common::AlignedBuffer<float> buf(count, align);
  REQUIRE(buf.size() == count);
  CHECK(reinterpret_cast<std::uintptr_t>(buf.data()) % align == 0);
  for (float v : buf) REQUIRE(v == 0.0f);
  for (std::size_t i = 0; i < count; ++i) buf[i] = static_cast<float>(i);
  auto copy = buf.Copy();
  CHECK(copy.data() != buf.data());
  CHECK(std::memcmp(copy.data(), buf.data(), buf.size_bytes()) == 0);
  auto moved = std::move(buf);
  CHECK(buf.empty());
  CHECK(moved.size() == count);
  CHECK(moved[count - 1] == static_cast<float>(count - 1));
  static_assert(!std::is_copy_constructible_v<common::AlignedBuffer<float>>);
  CHECK_THROWS_AS(common::AlignedBuffer<float>(4, 48), std::invalid_argument);
}

TEST_CASE("peak RSS grows when memory is touched", "[unit]") {
  const std::uint64_t before = common::peak_rss_bytes();
  CHECK(before > 0);
  const std::size_t bytes = 96u << 20;
  common::AlignedBuffer<unsigned char> big(bytes, 4096);  // zero-filled: every page touched
  CHECK(big[bytes - 1] == 0);
  CHECK(common::peak_rss_bytes() >= before);
  CHECK(common::peak_rss_bytes() >= bytes);
}
