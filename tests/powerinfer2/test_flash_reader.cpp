// io::FlashReader: O_DIRECT reads through io_uring or the pread pool land exactly, errors
// name the file and offset, statistics count, and the page cache stays untouched.
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
#include <sys/mman.h>
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

// Opens a reader asking for `want`; a fallback the environment imposes (no io_uring, no
// O_DIRECT on the temp filesystem) is accepted and reported, anything else fails.
std::unique_ptr<FlashReader> open_reader(const std::filesystem::path& path, unsigned queue_depth,
                                         ReadBackend want) {
  auto reader = std::make_unique<FlashReader>(path.string(), queue_depth, want);
  INFO("backend: " << reader->backend_description());
  if (reader->backend() != want) {
    bool no_uring = want == ReadBackend::io_uring && reader->backend() == ReadBackend::pread_pool;
    bool no_direct = reader->backend() == ReadBackend::buffered_pread;
    REQUIRE((no_uring || no_direct));
    WARN("asked for " << io::backend_name(want) << ", running on " << reader->backend_description());
  }
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

TEST_CASE("powerinfer2 flash reader: random aligned reads from two threads land exactly", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool, ReadBackend::buffered_pread);
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes);
  write_bytes(dir / "weights.bin", content);
  auto reader = open_reader(dir / "weights.bin", 16, want);
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

TEST_CASE("powerinfer2 flash reader: 1000 small reads at queue depth 4 complete", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool);
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes);
  write_bytes(dir / "weights.bin", content);
  auto reader = open_reader(dir / "weights.bin", 4, want);

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

TEST_CASE("powerinfer2 flash reader: reads past the end fail with the file and offset", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool, ReadBackend::buffered_pread);
  testing::TempDir dir;
  auto content = known_bytes(kFileBytes + 100);  // the last block holds 100 bytes
  const auto path = dir / "weights.bin";
  write_bytes(path, content);
  auto reader = open_reader(path, 8, want);
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

TEST_CASE("powerinfer2 flash reader: the end of file met by the I/O thread names file and offset", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool);
  testing::TempDir dir;
  const auto path = dir / "weights.bin";
  write_bytes(path, known_bytes(kFileBytes));
  auto reader = open_reader(path, 8, want);
  std::filesystem::resize_file(path, std::uintmax_t{1} << 20);
  common::AlignedBuffer<std::uint8_t> buf(kDirectAlign, kDirectAlign);
  Flag flag;
  ReadRequest r{std::uint64_t{3} << 20, kDirectAlign, buf.data(), &flag};
  reader->submit({&r, 1});
  CHECK(io::wait_done(flag) == io::kReadFailed);
  CHECK_THAT(reader->last_error(), Catch::Contains(path.string()) && Catch::Contains("offset 3145728") &&
                                       Catch::Contains("unexpected end of file"));
}

TEST_CASE("powerinfer2 flash reader: a missing file throws an IoError naming it", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "no-such-model.bin").string();
  CHECK_THROWS_AS(FlashReader(path), common::IoError);
  CHECK_THROWS_WITH(FlashReader(path), Catch::Contains(path) && Catch::Contains("No such file"));
}

TEST_CASE("powerinfer2 flash reader: stats count reads, bytes and busy time", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool);
  testing::TempDir dir;
  write_bytes(dir / "weights.bin", known_bytes(kFileBytes));
  auto reader = open_reader(dir / "weights.bin", 8, want);
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

TEST_CASE("powerinfer2 flash reader: O_DIRECT reads leave no pages in the page cache", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool, ReadBackend::buffered_pread);
  testing::TempDir dir;
  const auto path = dir / "weights.bin";
  write_bytes(path, known_bytes(kFileBytes));
  drop_from_page_cache(path);
  if (resident_pages(path) != 0)
    PWPI_SKIP("the kernel kept the test file's pages despite POSIX_FADV_DONTNEED");
  std::string backend;
  {
    auto reader = open_reader(path, 8, want);
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

TEST_CASE("powerinfer2 flash reader: PWPI_IO_BACKEND picks the backend", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "weights.bin").string();
  write_bytes(path, known_bytes(kFileBytes));
  {
    EnvGuard env("PWPI_IO_BACKEND", "pread");
    FlashReader reader(path, 32);
    CHECK(reader.backend() != ReadBackend::io_uring);
    if (reader.backend() == ReadBackend::pread_pool)
      CHECK(reader.backend_description() ==
            "pread pool of 8 threads, O_DIRECT, queue depth 32 (forced by PWPI_IO_BACKEND=pread)");
    // An explicit choice wins over the environment.
    FlashReader uring(path, 32, ReadBackend::io_uring);
    CHECK(uring.backend_description().find("PWPI_IO_BACKEND") == std::string::npos);
  }
  {
    EnvGuard env("PWPI_IO_BACKEND", "libaio");
    CHECK_THROWS_WITH(FlashReader(path), Catch::Contains("PWPI_IO_BACKEND") && Catch::Contains("libaio"));
  }
  FlashReader reader(path, 64);
  if (reader.backend() == ReadBackend::io_uring)
    CHECK(reader.backend_description() == "io_uring, O_DIRECT, queue depth 64");
  else
    WARN("default backend: " << reader.backend_description());
}

TEST_CASE("powerinfer2 flash reader: the destructor completes every submitted read", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool);
  testing::TempDir dir;
  write_bytes(dir / "weights.bin", known_bytes(kFileBytes));
  constexpr std::size_t kReads = 256;
  common::AlignedBuffer<std::uint8_t> buf(kDirectAlign * 2, kDirectAlign);
  std::vector<Flag> flags(kReads);
  {
    auto reader = open_reader(dir / "weights.bin", 2, want);
    std::vector<ReadRequest> reqs;
    for (std::size_t i = 0; i < kReads; ++i)
      reqs.push_back({i * kDirectAlign, kDirectAlign, buf.data() + (i % 2) * kDirectAlign, &flags[i]});
    reader->submit(reqs);
  }
  CHECK(std::all_of(flags.begin(), flags.end(), [](const Flag& f) { return f.load() == io::kReadDone; }));
}

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

TEST_CASE("powerinfer2 flash reader: measure_read_bandwidth reports consistent figures", "[unit]") {
  auto want = GENERATE(ReadBackend::io_uring, ReadBackend::pread_pool);
  auto random = GENERATE(true, false);
  testing::TempDir dir;
  const std::string path = (dir / "weights.bin").string();
  write_bytes(path, known_bytes(kFileBytes));
  constexpr std::size_t kLen = 64 * 1024;
  auto bw = io::measure_read_bandwidth(path, kLen, 4, 2 * kFileBytes, random, 3, want);
  INFO(io::backend_name(bw.backend) << (random ? " random" : " sequential") << ": " << bw.bytes_per_s / 1e6
                                    << " MB/s, " << bw.iops << " IOPS");
  CHECK(bw.bytes_per_s > 0);
  CHECK(bw.iops * kLen == Approx(bw.bytes_per_s));
  if (want == ReadBackend::pread_pool) CHECK(bw.backend != ReadBackend::io_uring);
  CHECK_THROWS_AS(io::measure_read_bandwidth(path, 2 * kFileBytes, 4, kFileBytes, random),
                  common::InputError);
}
