// io::FlashReader: O_DIRECT reads through io_uring or the pread pool land exactly, errors
// name the file and offset, statistics count, and the page cache stays untouched. Each
// backend has its own test cases: one that this machine lacks (io_uring refused by the
// kernel or a sandbox, O_DIRECT by the filesystem; probed here, not by the reader) is skipped
// visibly, and a reader that falls back although the machine offers its backend fails.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/aligned_buffer.hpp"
#include "common/errors.hpp"
#include "common/timer.hpp"
#include "io/flash_reader.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
using io::FlashReader;
using io::kDirectAlign;
using io::ReadBackend;
using io::ReadRequest;
using Flag = std::atomic<std::uint32_t>;

namespace {

constexpr std::size_t kFileBytes = std::size_t{4} << 20;

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Known bytes: every 8-byte word is a hash of its index, so a read from the wrong offset or a
// torn read shows.
std::vector<std::uint8_t> known_bytes(std::size_t n) {
  std::vector<std::uint8_t> out(n);
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t w = splitmix64(i / 8);
    std::memcpy(out.data() + i, &w, std::min<std::size_t>(8, n - i));
  }
  return out;
}

void write_bytes(const std::filesystem::path& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

// What this machine lacks for `want` on `path` ("" when nothing), probed without the reader:
// io_uring by the io_uring_setup system call, O_DIRECT by an aligned read of `path`.
std::string missing_for(ReadBackend want, const std::filesystem::path& path) {
  if (want == ReadBackend::buffered_pread) return "";
  if (want == ReadBackend::io_uring) {
    io_uring_params params{};
    const long fd = ::syscall(__NR_io_uring_setup, 8, &params);
    if (fd < 0) return std::string("io_uring_setup: ") + std::strerror(errno);
    ::close(static_cast<int>(fd));
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
  if (fd < 0) return std::string("open with O_DIRECT: ") + std::strerror(errno);
  common::AlignedBuffer<std::uint8_t> block(kDirectAlign, kDirectAlign);
  const ssize_t n = ::pread(fd, block.data(), kDirectAlign, 0);
  const int err = errno;
  ::close(fd);
  if (n < 0) return std::string("an O_DIRECT read: ") + std::strerror(err);
  return "";
}

// Whether the machine lacks what `want` needs on `path`: then the test is skipped (under
// CTest the process exits with the skip code; run by hand, a warning) and must return.
bool skipped_without(ReadBackend want, const std::filesystem::path& path) {
  const std::string missing = missing_for(want, path);
  if (missing.empty()) return false;
  const std::string reason = std::string(io::backend_name(want)) + " is not available here (" + missing + ")";
  if (testing::skip_exits_process()) testing::skip_process(reason);
  WARN("SKIPPED: " << reason);
  return true;
}

// Opens a reader with `want`; nullptr when skipped_without(want). A reader on another
// backend although the machine offers `want` fails.
std::unique_ptr<FlashReader> open_reader(const std::filesystem::path& path, unsigned queue_depth,
                                         ReadBackend want) {
  if (skipped_without(want, path)) return nullptr;
  auto reader = std::make_unique<FlashReader>(path.string(), queue_depth, want);
  INFO("backend: " << reader->backend_description());
  REQUIRE(reader->backend() == want);
  return reader;
}

// Pages of `path` in the page cache (mincore over a mapping, which faults nothing in).
std::size_t resident_pages(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::size_t size = std::filesystem::file_size(path);
  void* map = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  long page = ::sysconf(_SC_PAGESIZE);
  std::vector<unsigned char> vec((size + page - 1) / page);
  REQUIRE(::mincore(map, size, vec.data()) == 0);
  ::munmap(map, size);
  return static_cast<std::size_t>(
      std::count_if(vec.begin(), vec.end(), [](unsigned char c) { return c & 1; }));
}

void drop_from_page_cache(const std::filesystem::path& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  ::fsync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Sets an environment variable for the scope of a test.
struct EnvGuard {
  EnvGuard(const char* name, const char* value) : name_(name) { ::setenv(name, value, 1); }
  ~EnvGuard() { ::unsetenv(name_); }
  const char* name_;
};

}  // namespace

// Registers `fn(backend)` as one test case per backend (_DIRECT: the two O_DIRECT ones; _ALL:
// and the buffered pread pool): CTest runs each alone, so a backend skipped here hides no
// other's result.
#define FLASH_READER_TESTS_DIRECT(title, fn)                                                  \
  TEST_CASE("powerinfer2 flash reader: " title " (io_uring)", "[unit]") {                    \
    fn(ReadBackend::io_uring);                                                                \
  }                                                                                           \
  TEST_CASE("powerinfer2 flash reader: " title " (pread pool)", "[unit]") {                  \
    fn(ReadBackend::pread_pool);                                                              \
  }
#define FLASH_READER_TESTS_ALL(title, fn)                                                     \
  FLASH_READER_TESTS_DIRECT(title, fn)                                                        \
  TEST_CASE("powerinfer2 flash reader: " title " (buffered pread)", "[unit]") {              \
    fn(ReadBackend::buffered_pread);                                                          \
  }

static void random_reads_land_exactly(ReadBackend want) {
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes);
  write_bytes(dir / "weights.bin", content);
  auto reader = open_reader(dir / "weights.bin", 16, want);
  if (!reader) return;  // skipped
  REQUIRE(reader->file_size() == kFileBytes);

  constexpr std::size_t kReads = 400;
  std::mt19937_64 rng(7);
  std::vector<ReadRequest> reqs(kReads);
  std::vector<common::AlignedBuffer<std::uint8_t>> bufs;
  std::vector<Flag> flags(kReads);
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < kReads; ++i) {
    std::size_t blocks = 1 + rng() % 8;
    std::uint64_t offset = rng() % (kFileBytes / kDirectAlign - blocks + 1) * kDirectAlign;
    bufs.emplace_back(blocks * kDirectAlign, kDirectAlign);
    std::memset(bufs.back().data(), 0xAB, bufs.back().size());
    reqs[i] = {offset, blocks * kDirectAlign, bufs.back().data(), &flags[i]};
    total += blocks * kDirectAlign;
  }
  // Two submitting threads, batches of 1..20 requests each.
  auto submit_half = [&](std::size_t begin, std::size_t end, std::uint64_t seed) {
    std::mt19937_64 r(seed);
    for (std::size_t i = begin; i < end;) {
      std::size_t n = std::min<std::size_t>(end - i, 1 + r() % 20);
      reader->submit(std::span(reqs).subspan(i, n));
      i += n;
    }
  };
  std::thread other(submit_half, kReads / 2, kReads, 2);
  submit_half(0, kReads / 2, 1);
  other.join();

  std::size_t wrong = 0;
  for (std::size_t i = 0; i < kReads; ++i) {
    REQUIRE(io::wait_done(flags[i]) == io::kReadDone);
    if (std::memcmp(bufs[i].data(), content.data() + reqs[i].offset, reqs[i].length) != 0) ++wrong;
  }
  INFO(reader->backend_description());
  CHECK(wrong == 0);
  reader->wait_idle();
  auto st = reader->stats();
  CHECK(st.reads == kReads);
  CHECK(st.bytes == total);
  CHECK(reader->last_error().empty());
}
FLASH_READER_TESTS_ALL("random aligned reads from two threads land exactly", random_reads_land_exactly)

static void small_reads_complete(ReadBackend want) {
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes);
  write_bytes(dir / "weights.bin", content);
  auto reader = open_reader(dir / "weights.bin", 4, want);
  if (!reader) return;  // skipped

  constexpr std::size_t kReads = 1000;
  common::AlignedBuffer<std::uint8_t> buf(kReads * kDirectAlign, kDirectAlign);
  std::vector<Flag> flags(kReads);
  std::vector<std::uint64_t> offsets(kReads);
  for (std::size_t i = 0; i < kReads; ++i) {
    offsets[i] = (i * 389 % (kFileBytes / kDirectAlign)) * kDirectAlign;  // scattered, all distinct
    ReadRequest r{offsets[i], kDirectAlign, buf.data() + i * kDirectAlign, &flags[i]};
    reader->submit({&r, 1});  // one call each: the wake-up path every time
  }
  reader->wait_idle();
  std::size_t not_done = 0, wrong = 0;
  for (std::size_t i = 0; i < kReads; ++i) {
    if (flags[i].load() != io::kReadDone) ++not_done;
    if (std::memcmp(buf.data() + i * kDirectAlign, content.data() + offsets[i], kDirectAlign) != 0) ++wrong;
  }
  CHECK(not_done == 0);
  CHECK(wrong == 0);
  CHECK(reader->stats().reads == kReads);
}
FLASH_READER_TESTS_DIRECT("1000 small reads at queue depth 4 complete", small_reads_complete)

static void reads_past_the_end_fail(ReadBackend want) {
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes + 100);  // the last block holds 100 bytes
  const auto path = dir / "weights.bin";
  write_bytes(path, content);
  auto reader = open_reader(path, 8, want);
  if (!reader) return;  // skipped
  common::AlignedBuffer<std::uint8_t> buf(2 * kDirectAlign, kDirectAlign);

  // The last, partial block: 100 bytes of file, then zeros.
  Flag tail;
  std::memset(buf.data(), 0xAB, buf.size());
  ReadRequest r{kFileBytes, kDirectAlign, buf.data(), &tail};
  reader->submit({&r, 1});
  REQUIRE(io::wait_done(tail) == io::kReadDone);
  CHECK(std::memcmp(buf.data(), content.data() + kFileBytes, 100) == 0);
  CHECK(std::all_of(buf.data() + 100, buf.data() + kDirectAlign, [](std::uint8_t b) { return b == 0; }));

  // Beyond it: fails at once, naming the file and the offset.
  Flag past;
  ReadRequest bad{kFileBytes, 2 * kDirectAlign, buf.data(), &past};
  reader->submit({&bad, 1});
  CHECK(io::wait_done(past) == io::kReadFailed);
  std::string err = reader->last_error();
  CHECK_THAT(err, Catch::Contains(path.string()) && Catch::Contains("offset " + std::to_string(kFileBytes)) &&
                      Catch::Contains("past the end"));

  // The reader goes on; last_error keeps the first failure.
  Flag good;
  ReadRequest ok{4096, kDirectAlign, buf.data(), &good};
  reader->submit({&ok, 1});
  CHECK(io::wait_done(good) == io::kReadDone);
  CHECK(std::memcmp(buf.data(), content.data() + 4096, kDirectAlign) == 0);

  reader->wait_idle();
  CHECK(reader->last_error() == err);
  CHECK(reader->stats().reads == 2);
}
FLASH_READER_TESTS_ALL("reads past the end fail with the file and offset", reads_past_the_end_fail)

static void end_of_file_in_io_thread(ReadBackend want) {
  testing::TempDir dir;
  const auto path = dir / "weights.bin";
  write_bytes(path, known_bytes(kFileBytes));
  auto reader = open_reader(path, 8, want);
  if (!reader) return;  // skipped
  std::filesystem::resize_file(path, std::uintmax_t{1} << 20);
  common::AlignedBuffer<std::uint8_t> buf(kDirectAlign, kDirectAlign);
  Flag flag;
  ReadRequest r{std::uint64_t{3} << 20, kDirectAlign, buf.data(), &flag};
  reader->submit({&r, 1});
  CHECK(io::wait_done(flag) == io::kReadFailed);
  CHECK_THAT(reader->last_error(), Catch::Contains(path.string()) && Catch::Contains("offset 3145728") &&
                                       Catch::Contains("unexpected end of file"));
}
FLASH_READER_TESTS_DIRECT("the end of file met by the I/O thread names file and offset", end_of_file_in_io_thread)

TEST_CASE("powerinfer2 flash reader: a missing file throws an IoError naming it", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "no-such-model.bin").string();
  CHECK_THROWS_AS(FlashReader(path), common::IoError);
  CHECK_THROWS_WITH(FlashReader(path), Catch::Contains(path) && Catch::Contains("No such file"));
}

static void stats_count(ReadBackend want) {
  testing::TempDir dir;
  write_bytes(dir / "weights.bin", known_bytes(kFileBytes));
  auto reader = open_reader(dir / "weights.bin", 8, want);
  if (!reader) return;  // skipped
  constexpr std::size_t kReads = 64, kLen = 64 * 1024;
  common::AlignedBuffer<std::uint8_t> buf(kReads * kLen, kDirectAlign);
  std::vector<Flag> flags(kReads);
  std::vector<ReadRequest> reqs;
  for (std::size_t i = 0; i < kReads; ++i) reqs.push_back({i * kLen, kLen, buf.data() + i * kLen, &flags[i]});

  common::Stopwatch sw;
  reader->submit(reqs);
  reader->wait_idle();
  double wall_s = sw.elapsed_s();
  auto st = reader->stats();
  CHECK(st.reads == kReads);
  CHECK(st.bytes == kReads * kLen);
  CHECK(st.busy_s > 0);
  CHECK(st.busy_s <= wall_s);

  reader->reset_stats();
  st = reader->stats();
  CHECK(st.reads == 0);
  CHECK(st.bytes == 0);
  CHECK(st.busy_s == 0);
  reader->submit(std::span(reqs).first(3));
  reader->wait_idle();
  CHECK(reader->stats().bytes == 3 * kLen);
}
FLASH_READER_TESTS_DIRECT("stats count reads, bytes and busy time", stats_count)

static void page_cache_untouched(ReadBackend want) {
  testing::TempDir dir;
  const auto path = dir / "weights.bin";
  write_bytes(path, known_bytes(kFileBytes));
  drop_from_page_cache(path);
  if (resident_pages(path) != 0)
    PWPI_SKIP("the kernel kept the test file's pages despite POSIX_FADV_DONTNEED");
  std::string backend;
  {
    auto reader = open_reader(path, 8, want);
    if (!reader) return;  // skipped
    backend = reader->backend_description();
    constexpr std::size_t kLen = 256 * 1024;
    common::AlignedBuffer<std::uint8_t> buf(kFileBytes, kDirectAlign);
    std::vector<Flag> flags(kFileBytes / kLen);
    std::vector<ReadRequest> reqs;
    for (std::size_t i = 0; i < flags.size(); ++i)
      reqs.push_back({i * kLen, kLen, buf.data() + i * kLen, &flags[i]});
    reader->submit(reqs);
    reader->wait_idle();
    REQUIRE(reader->stats().bytes == kFileBytes);
    CHECK(std::memcmp(buf.data(), known_bytes(kFileBytes).data(), kFileBytes) == 0);
  }
  INFO(backend);
  CHECK(resident_pages(path) == 0);
}
FLASH_READER_TESTS_ALL("O_DIRECT reads leave no pages in the page cache", page_cache_untouched)

TEST_CASE("powerinfer2 flash reader: PWPI_IO_BACKEND picks the backend", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "weights.bin").string();
  write_bytes(path, known_bytes(kFileBytes));
  // What this machine offers decides the backend the reader must pick (probed here).
  const std::string no_direct = missing_for(ReadBackend::pread_pool, path);
  const std::string no_uring = missing_for(ReadBackend::io_uring, path);
  INFO("O_DIRECT: " << (no_direct.empty() ? "available" : no_direct)
                    << "; io_uring: " << (no_uring.empty() ? "available" : no_uring));
  {
    EnvGuard env("PWPI_IO_BACKEND", "pread");
    FlashReader reader(path, 32);
    if (no_direct.empty())
      CHECK(reader.backend_description() ==
            "pread pool of 8 threads, O_DIRECT, queue depth 32 (forced by PWPI_IO_BACKEND=pread)");
    else
      CHECK(reader.backend() == ReadBackend::buffered_pread);
    // An explicit choice wins over the environment.
    FlashReader uring(path, 32, ReadBackend::io_uring);
    CHECK(uring.backend_description().find("PWPI_IO_BACKEND") == std::string::npos);
    if (no_uring.empty()) CHECK(uring.backend() == ReadBackend::io_uring);
  }
  {
    EnvGuard env("PWPI_IO_BACKEND", "libaio");
    CHECK_THROWS_WITH(FlashReader(path), Catch::Contains("PWPI_IO_BACKEND") && Catch::Contains("libaio"));
  }
  FlashReader reader(path, 64);
  if (no_uring.empty())
    CHECK(reader.backend_description() == "io_uring, O_DIRECT, queue depth 64");
  else
    CHECK(reader.backend() != ReadBackend::io_uring);
  if (!no_uring.empty() || !no_direct.empty())
    WARN("default backend without " << (no_uring.empty() ? "O_DIRECT" : "io_uring") << ": "
                                    << reader.backend_description());
}

static void destructor_completes_reads(ReadBackend want) {
  testing::TempDir dir;
  write_bytes(dir / "weights.bin", known_bytes(kFileBytes));
  constexpr std::size_t kReads = 256;
  common::AlignedBuffer<std::uint8_t> buf(kDirectAlign * 2, kDirectAlign);
  std::vector<Flag> flags(kReads);
  {
    auto reader = open_reader(dir / "weights.bin", 2, want);
    if (!reader) return;  // skipped
    std::vector<ReadRequest> reqs;
    for (std::size_t i = 0; i < kReads; ++i)
      reqs.push_back({i * kDirectAlign, kDirectAlign, buf.data() + (i % 2) * kDirectAlign, &flags[i]});
    reader->submit(reqs);
  }
  CHECK(std::all_of(flags.begin(), flags.end(), [](const Flag& f) { return f.load() == io::kReadDone; }));
}
FLASH_READER_TESTS_DIRECT("the destructor completes every submitted read", destructor_completes_reads)

TEST_CASE("powerinfer2 flash reader: a misaligned request rejects its whole batch", "[unit]") {
  testing::TempDir dir;
  write_bytes(dir / "weights.bin", known_bytes(kFileBytes));
  FlashReader reader((dir / "weights.bin").string(), 4);
  common::AlignedBuffer<std::uint8_t> buf(3 * kDirectAlign, kDirectAlign);
  Flag a{7}, b{7}, c{7};
  ReadRequest reqs[] = {{0, kDirectAlign, buf.data(), &a},
                        {512, kDirectAlign, buf.data() + kDirectAlign, &b},  // offset
                        {0, 100, buf.data() + 2 * kDirectAlign, &c}};        // length
  CHECK_THROWS_AS(reader.submit(std::span(reqs).first(2)), common::InternalError);
  CHECK_THROWS_AS(reader.submit({&reqs[2], 1}), common::InternalError);
  ReadRequest odd_dest{0, kDirectAlign, buf.data() + 64, &c};
  CHECK_THROWS_AS(reader.submit({&odd_dest, 1}), common::InternalError);
  reader.wait_idle();
  CHECK(a.load() == 7);  // nothing of the batch was queued
  CHECK(reader.stats().reads == 0);
}

TEST_CASE("powerinfer2 flash reader: wait_done sleeps until another thread sets the flag", "[unit]") {
  Flag flag{io::kReadPending};
  common::Stopwatch sw;
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    flag.store(io::kReadFailed, std::memory_order_release);
    flag.notify_all();
  });
  CHECK(io::wait_done(flag) == io::kReadFailed);
  CHECK(sw.elapsed_ms() >= 25);
  setter.join();
}

static void bandwidth_figures(ReadBackend want) {
  auto random = GENERATE(true, false);
  testing::TempDir dir;
  const std::string path = (dir / "weights.bin").string();
  write_bytes(path, known_bytes(kFileBytes));
  if (skipped_without(want, path)) return;
  constexpr std::size_t kLen = 64 * 1024;
  auto bw = io::measure_read_bandwidth(path, kLen, 4, 2 * kFileBytes, random, 3, want);
  INFO(io::backend_name(bw.backend) << (random ? " random" : " sequential") << ": " << bw.bytes_per_s / 1e6
                                    << " MB/s, " << bw.iops << " IOPS");
  CHECK(bw.bytes_per_s > 0);
  CHECK(bw.iops * kLen == Approx(bw.bytes_per_s));
  CHECK(bw.backend == want);
  CHECK_THROWS_AS(io::measure_read_bandwidth(path, 2 * kFileBytes, 4, kFileBytes, random),
                  common::InputError);
}
FLASH_READER_TESTS_DIRECT("measure_read_bandwidth reports consistent figures", bandwidth_figures)
