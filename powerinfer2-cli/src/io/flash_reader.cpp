#include "io/flash_reader.hpp"

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "common/aligned_buffer.hpp"
#include "common/errors.hpp"
#include "common/timer.hpp"

namespace powerinfer2::io {

namespace {

constexpr unsigned kMaxQueueDepth = 4096;
constexpr unsigned kMaxPoolThreads = 8;
constexpr std::size_t kMaxReadBytes = std::size_t{1} << 30;  // one SQE's length is 32 bits
// user_data of the poll on the wake-up eventfd; reads carry their Slot's address.
constexpr std::uint64_t kWakeTag = ~std::uint64_t{0};

std::uint64_t round_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

bool aligned(std::uint64_t x) { return x % kDirectAlign == 0; }

std::string read_error(const std::string& path, const ReadRequest& r, const std::string& what) {
  return path + ": cannot read " + std::to_string(r.length) + " bytes at offset " + std::to_string(r.offset) +
         ": " + what;
}

void complete(const ReadRequest& r, std::uint32_t value) {
  r.done->store(value, std::memory_order_release);
  r.done->notify_all();
}

}  // namespace

std::string_view backend_name(ReadBackend backend) {
  switch (backend) {
    case ReadBackend::io_uring: return "io_uring";
    case ReadBackend::pread_pool: return "pread_pool";
    case ReadBackend::buffered_pread: return "buffered_pread";
  }
  return "?";
}

struct FlashReader::Impl {
  // A read in the ring: the request and how much of it has arrived (short reads resume).
  struct Slot {
    ReadRequest req;
    std::size_t done_bytes = 0;
  };

  std::string path;
  int fd = -1;
  std::uint64_t file_size = 0;
  ReadBackend backend = ReadBackend::io_uring;
  unsigned queue_depth = 0;
  std::string note;  // why the backend is not the default, for the description

  // Shared with submitters; all under mu.
  mutable std::mutex mu;
  std::condition_variable work_cv;  // pool threads: work queued or stop
  std::condition_variable idle_cv;  // wait_idle: outstanding reached 0
  std::vector<ReadRequest> queue;   // not yet started: queue[head..]
  std::size_t head = 0;
  std::uint64_t outstanding = 0;  // submitted, not completed (queued + in flight)
  unsigned in_flight = 0;
  bool stop = false;
  std::string first_error;
  std::uint64_t stat_reads = 0, stat_bytes = 0;
  std::int64_t busy_ns = 0, busy_since_ns = 0;  // busy_since_ns: when in_flight left 0

  // io_uring backend; touched by the I/O thread only (after construction).
  io_uring ring{};
  bool ring_ready = false;
  int wake_fd = -1;
  std::atomic<bool> wake_pending{false};  // an eventfd write is on its way: skip another
  std::vector<Slot> slots;
  std::vector<Slot*> free_slots;

  std::vector<std::thread> threads;

  ~Impl() {
    if (ring_ready) io_uring_queue_exit(&ring);
    if (wake_fd >= 0) ::close(wake_fd);
    if (fd >= 0) ::close(fd);
  }

  // --- shared bookkeeping (call with mu held) ---

  void record_error(const std::string& message) {
    if (first_error.empty()) first_error = message;
  }
  void start_reads(unsigned n) {
    if (n == 0) return;
    if (in_flight == 0) busy_since_ns = common::now_ns();
    in_flight += n;
  }
  void finish_reads(unsigned n_done, std::uint64_t ok_reads, std::uint64_t ok_bytes) {
    if (n_done == 0) return;
    in_flight -= n_done;
    if (in_flight == 0) {
      busy_ns += common::now_ns() - busy_since_ns;
      busy_since_ns = 0;
    }
    stat_reads += ok_reads;
    stat_bytes += ok_bytes;
    outstanding -= n_done;
    if (outstanding == 0) idle_cv.notify_all();
  }
  // Drops consumed entries so that the queue does not grow while it never quite empties.
  void compact_queue() {
    if (head == queue.size()) {
      queue.clear();
      head = 0;
    } else if (head > 1024 && head * 2 > queue.size()) {
      queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(head));
      head = 0;
    }
  }

  // --- the pread pool ---

  // Reads r completely; "" or the error message.
  std::string pread_fully(const ReadRequest& r) const {
    auto* dest = static_cast<std::uint8_t*>(r.dest);
    std::size_t got = 0;
    while (got < r.length) {
      std::uint64_t pos = r.offset + got;
      ssize_t n = ::pread(fd, dest + got, r.length - got, static_cast<off_t>(pos));
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return read_error(path, r, std::strerror(errno));
      }
      if (n == 0) {
        if (pos >= file_size) {  // the tail of the last block: zeros
          std::memset(dest + got, 0, r.length - got);
          break;
        }
        return read_error(path, r, "unexpected end of file at byte " + std::to_string(pos));
      }
      got += static_cast<std::size_t>(n);
      // O_DIRECT resumes at an aligned position: re-read the partial block.
      if (got < r.length && r.offset + got < file_size && backend != ReadBackend::buffered_pread)
        got = got / kDirectAlign * kDirectAlign;
    }
    if (backend == ReadBackend::buffered_pread)
      ::posix_fadvise(fd, static_cast<off_t>(r.offset), static_cast<off_t>(r.length), POSIX_FADV_DONTNEED);
    return {};
  }

  void pool_loop() {
    std::unique_lock lk(mu);
    for (;;) {
      work_cv.wait(lk, [&] { return stop || head < queue.size(); });
      if (head == queue.size()) return;  // stop, and nothing left to read
      ReadRequest r = queue[head++];
      compact_queue();
      start_reads(1);
      lk.unlock();
      std::string err = pread_fully(r);
      if (!err.empty()) {
        lk.lock();
        record_error(err);  // before the flag: whoever sees 2 finds the message
        lk.unlock();
      }
      complete(r, err.empty() ? kReadDone : kReadFailed);
      lk.lock();
      finish_reads(1, err.empty() ? 1 : 0, err.empty() ? r.length : 0);
    }
  }

  // --- io_uring ---

  // Ring entries: one per read in flight plus the wake-up poll, so get_sqe never runs dry.
  io_uring_sqe* sqe() {
    io_uring_sqe* s = io_uring_get_sqe(&ring);
    PWPI_CHECK(s != nullptr);
    return s;
  }
  void arm_wake_poll() {
    io_uring_sqe* s = sqe();
    io_uring_prep_poll_add(s, wake_fd, POLLIN);
    s->user_data = kWakeTag;
  }
  void prep_read(Slot* slot) {
    io_uring_sqe* s = sqe();
    std::size_t done = slot->done_bytes;
    io_uring_prep_read(s, fd, static_cast<std::uint8_t*>(slot->req.dest) + done,
                       static_cast<unsigned>(slot->req.length - done), slot->req.offset + done);
    io_uring_sqe_set_data(s, slot);
  }

  // One read's completion: true when the slot is finished (err says how), false when the rest
  // of it was resubmitted.
  bool on_read_cqe(Slot* slot, int res, std::string& err) {
    const ReadRequest& r = slot->req;
    if (res == -EINTR || res == -EAGAIN) {
      prep_read(slot);
      return false;
    }
    if (res < 0) {
      err = read_error(path, r, std::strerror(-res));
      return true;
    }
    auto* dest = static_cast<std::uint8_t*>(r.dest);
    std::uint64_t pos = r.offset + slot->done_bytes;
    if (res == 0) {
      if (pos >= file_size) {
        std::memset(dest + slot->done_bytes, 0, r.length - slot->done_bytes);
        return true;
      }
      err = read_error(path, r, "unexpected end of file at byte " + std::to_string(pos));
      return true;
    }
    slot->done_bytes += static_cast<std::size_t>(res);
    if (slot->done_bytes == r.length) return true;
    pos = r.offset + slot->done_bytes;
    if (pos >= file_size) {  // the end of the file inside the last block
      std::memset(dest + slot->done_bytes, 0, r.length - slot->done_bytes);
      return true;
    }
    slot->done_bytes = slot->done_bytes / kDirectAlign * kDirectAlign;  // O_DIRECT resumes aligned
    prep_read(slot);
    return false;
  }

  void uring_loop() {
    arm_wake_poll();
    for (;;) {
      {
        std::lock_guard lk(mu);
        unsigned started = 0;
        while (!free_slots.empty() && head < queue.size()) {
          Slot* slot = free_slots.back();
          free_slots.pop_back();
          slot->req = queue[head++];
          slot->done_bytes = 0;
          prep_read(slot);
          ++started;
        }
        compact_queue();
        start_reads(started);
        if (stop && outstanding == 0) return;
      }
      // Transient failures retry (after reaping what completed); any other is a bug here
      // (a bad descriptor or address), and reads may be in the kernel: stop the process.
      int rc = io_uring_submit_and_wait(&ring, 1);
      PWPI_CHECK_MSG(rc >= 0 || rc == -EINTR || rc == -EAGAIN || rc == -EBUSY || rc == -ENOMEM,
                     path + ": io_uring_submit: " + std::strerror(-rc));
      unsigned n_seen = 0, n_done = 0;
      std::uint64_t ok_reads = 0, ok_bytes = 0;
      unsigned cq_head;
      io_uring_cqe* cqe;
      io_uring_for_each_cqe(&ring, cq_head, cqe) {
        ++n_seen;
        if (cqe->user_data == kWakeTag) {
          std::uint64_t count;
          while (::read(wake_fd, &count, sizeof count) > 0) {
          }
          wake_pending.store(false);
          arm_wake_poll();
          continue;
        }
        auto* slot = static_cast<Slot*>(io_uring_cqe_get_data(cqe));
        std::string slot_err;
        if (!on_read_cqe(slot, cqe->res, slot_err)) continue;
        if (slot_err.empty()) {
          ++ok_reads;
          ok_bytes += slot->req.length;
        } else {
          std::lock_guard lk(mu);
          record_error(slot_err);  // before the flag: whoever sees 2 finds the message
        }
        complete(slot->req, slot_err.empty() ? kReadDone : kReadFailed);
        ++n_done;
        free_slots.push_back(slot);
      }
      io_uring_cq_advance(&ring, n_seen);
      if (n_done > 0) {
        std::lock_guard lk(mu);
        finish_reads(n_done, ok_reads, ok_bytes);
      }
    }
  }

  // New requests were queued (n of them).
  void wake(std::size_t n) {
    if (backend == ReadBackend::io_uring) {
      if (!wake_pending.exchange(true)) {
        std::uint64_t one = 1;
        [[maybe_unused]] ssize_t written = ::write(wake_fd, &one, sizeof one);
      }
    } else if (n == 1) {
      work_cv.notify_one();
    } else {
      work_cv.notify_all();
    }
  }
};

FlashReader::FlashReader(const std::string& path, unsigned queue_depth, std::optional<ReadBackend> force)
    : impl_(std::make_unique<Impl>()) {
  PWPI_CHECK_MSG(
      queue_depth >= 1 && queue_depth <= kMaxQueueDepth,
      "queue depth " + std::to_string(queue_depth) + ", expected 1.." + std::to_string(kMaxQueueDepth));
  Impl& m = *impl_;
  m.path = path;
  m.queue_depth = queue_depth;

  if (!force) {
    if (const char* env = std::getenv("PWPI_IO_BACKEND"); env && *env) {
      std::string v = env;
      if (v == "pread") {
        force = ReadBackend::pread_pool;
        m.note = "forced by PWPI_IO_BACKEND=pread";
      } else if (v == "io_uring") {
        force = ReadBackend::io_uring;
      } else {
        throw common::UsageError("PWPI_IO_BACKEND: expected pread or io_uring, got '" + v + "'");
      }
    }
  } else if (*force != ReadBackend::io_uring) {
    m.note = "forced";
  }
  m.backend = force.value_or(ReadBackend::io_uring);

  bool direct = m.backend != ReadBackend::buffered_pread;
  if (direct) {
    m.fd = ::open(path.c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (m.fd < 0 && errno != EINVAL) throw common::IoError(path, "open", errno);
    direct = m.fd >= 0;
  }
  if (!direct && m.fd < 0) {
    m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (m.fd < 0) throw common::IoError(path, "open", errno);
  }
  struct stat st {};
  if (::fstat(m.fd, &st) != 0) throw common::IoError(path, "stat", errno);
  m.file_size = static_cast<std::uint64_t>(st.st_size);

  // Some filesystems take O_DIRECT at open and refuse the reads: probe one block.
  if (direct && m.file_size > 0) {
    common::AlignedBuffer<std::uint8_t> probe(kDirectAlign, kDirectAlign);
    ssize_t n;
    do {
      n = ::pread(m.fd, probe.data(), kDirectAlign, 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EINVAL) throw common::IoError(path, "read", errno);
    if (n < 0) {
      ::close(m.fd);
      m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (m.fd < 0) throw common::IoError(path, "open", errno);
      direct = false;
    }
  }
  if (!direct) {
    if (m.backend != ReadBackend::buffered_pread) m.note = "O_DIRECT refused by the filesystem";
    m.backend = ReadBackend::buffered_pread;
    // No readahead: it would cache pages nobody asked for, possibly after their DONTNEED.
    ::posix_fadvise(m.fd, 0, 0, POSIX_FADV_RANDOM);
  }

  if (m.backend == ReadBackend::io_uring) {
    int rc = io_uring_queue_init(queue_depth + 1, &m.ring, 0);
    if (rc == 0) {
      m.ring_ready = true;
      m.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
      if (m.wake_fd < 0) throw common::IoError(path, "create an eventfd for its I/O thread", errno);
    } else {
      m.backend = ReadBackend::pread_pool;
      m.note = std::string("io_uring unavailable: ") + std::strerror(-rc);
    }
  }

  if (m.backend == ReadBackend::io_uring) {
    m.slots.resize(queue_depth);
    for (auto& s : m.slots) m.free_slots.push_back(&s);
    m.threads.emplace_back([&m] { m.uring_loop(); });
  } else {
    unsigned n = std::min(queue_depth, kMaxPoolThreads);
    for (unsigned i = 0; i < n; ++i) m.threads.emplace_back([&m] { m.pool_loop(); });
  }
}

FlashReader::~FlashReader() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stop = true;
  }
  if (impl_->backend == ReadBackend::io_uring) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(impl_->wake_fd, &one, sizeof one);
  } else {
    impl_->work_cv.notify_all();
  }
  for (auto& t : impl_->threads) t.join();
}

ReadBackend FlashReader::backend() const { return impl_->backend; }
const std::string& FlashReader::path() const { return impl_->path; }
std::uint64_t FlashReader::file_size() const { return impl_->file_size; }
unsigned FlashReader::queue_depth() const { return impl_->queue_depth; }

std::string FlashReader::backend_description() const {
  const Impl& m = *impl_;
  std::string d;
  if (m.backend == ReadBackend::io_uring) {
    d = "io_uring, O_DIRECT";
  } else {
    d = std::string(m.backend == ReadBackend::buffered_pread ? "buffered pread" : "pread") + " pool of " +
        std::to_string(m.threads.size()) + " threads";
    d += m.backend == ReadBackend::buffered_pread ? ", page cache dropped after each read" : ", O_DIRECT";
  }
  d += ", queue depth " + std::to_string(m.queue_depth);
  if (!m.note.empty()) d += " (" + m.note + ")";
  return d;
}

void FlashReader::submit(std::span<const ReadRequest> requests) {
  Impl& m = *impl_;
  for (const ReadRequest& r : requests) {
    PWPI_CHECK_MSG(r.done != nullptr && r.dest != nullptr, "read request without a flag or a destination");
    PWPI_CHECK_MSG(
        aligned(r.offset) && aligned(r.length) && aligned(reinterpret_cast<std::uintptr_t>(r.dest)),
        "read of " + std::to_string(r.length) + " bytes at offset " + std::to_string(r.offset) + " is not " +
            std::to_string(kDirectAlign) + "-byte aligned (offset, length, destination)");
    PWPI_CHECK_MSG(r.length <= kMaxReadBytes,
                   "read of " + std::to_string(r.length) + " bytes, at most 1 GiB");
  }
  const std::uint64_t limit = round_up(m.file_size, kDirectAlign);
  std::size_t queued = 0;
  {
    std::lock_guard lk(m.mu);
    for (const ReadRequest& r : requests) {
      if (r.length == 0) {
        complete(r, kReadDone);
        continue;
      }
      if (r.offset > limit || r.length > limit - r.offset) {
        m.record_error(
            read_error(m.path, r, "past the end of the file (" + std::to_string(m.file_size) + " bytes)"));
        complete(r, kReadFailed);
        continue;
      }
      r.done->store(kReadPending, std::memory_order_relaxed);
      m.queue.push_back(r);
      ++queued;
    }
    m.outstanding += queued;
  }
  if (queued > 0) m.wake(queued);
}

void FlashReader::wait_idle() {
  std::unique_lock lk(impl_->mu);
  impl_->idle_cv.wait(lk, [&] { return impl_->outstanding == 0; });
}

std::string FlashReader::last_error() const {
  std::lock_guard lk(impl_->mu);
  return impl_->first_error;
}

FlashReader::Stats FlashReader::stats() const {
  const Impl& m = *impl_;
  std::lock_guard lk(m.mu);
  std::int64_t busy = m.busy_ns + (m.in_flight > 0 ? common::now_ns() - m.busy_since_ns : 0);
  return {m.stat_reads, m.stat_bytes, static_cast<double>(busy) * 1e-9};
}

void FlashReader::reset_stats() {
  Impl& m = *impl_;
  std::lock_guard lk(m.mu);
  m.stat_reads = m.stat_bytes = 0;
  m.busy_ns = 0;
  if (m.in_flight > 0) m.busy_since_ns = common::now_ns();
}

std::uint32_t wait_done(const std::atomic<std::uint32_t>& flag) {
  // A few microseconds of spinning: most waits in the cluster pipeline are short.
  for (int i = 0; i < 2000; ++i) {
    if (std::uint32_t v = flag.load(std::memory_order_acquire); v != kReadPending) return v;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
  }
  for (;;) {
    flag.wait(kReadPending, std::memory_order_acquire);
    if (std::uint32_t v = flag.load(std::memory_order_acquire); v != kReadPending) return v;
  }
}

ReadBandwidth measure_read_bandwidth(const std::string& path, std::size_t request_bytes, unsigned queue_depth,
                                     std::uint64_t total_bytes, bool random, std::uint64_t seed,
                                     std::optional<ReadBackend> force) {
  PWPI_CHECK_MSG(request_bytes > 0 && aligned(request_bytes),
                 "request size " + std::to_string(request_bytes) + " is not a positive multiple of 4096");
  FlashReader reader(path, queue_depth, force);
  const std::uint64_t size = reader.file_size();
  if (size < request_bytes)
    throw common::InputError(common::Where(path),
                             "a file of at least " + std::to_string(request_bytes) + " bytes",
                             std::to_string(size) + " bytes");

  const std::uint64_t n = std::max<std::uint64_t>(1, total_bytes / request_bytes);
  // One buffer per read in flight (request i uses buffer i % queue_depth; reads into a buffer
  // still being filled only cost overwritten bytes, never a wrong figure).
  common::AlignedBuffer<std::uint8_t> buffers(std::size_t{queue_depth} * request_bytes, kDirectAlign);
  std::vector<std::atomic<std::uint32_t>> flags(n);
  std::vector<ReadRequest> requests(n);
  std::mt19937_64 rng(seed);
  const std::uint64_t n_starts = (size - request_bytes) / kDirectAlign + 1;  // random aligned starts
  const std::uint64_t n_blocks = size / request_bytes;                       // sequential requests
  std::uniform_int_distribution<std::uint64_t> start(0, n_starts - 1);
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint64_t offset = random ? start(rng) * kDirectAlign : (i % n_blocks) * request_bytes;
    requests[i] = {offset, request_bytes, buffers.data() + (i % queue_depth) * request_bytes, &flags[i]};
  }

  common::Stopwatch sw;
  reader.submit(requests);
  reader.wait_idle();
  double seconds = sw.elapsed_s();
  for (const auto& f : flags) {
    if (f.load(std::memory_order_acquire) == kReadDone) continue;
    std::string err = reader.last_error();  // "<path>: cannot read ...": keep the part after the path
    if (err.starts_with(path + ": ")) err.erase(0, path.size() + 2);
    throw common::IoError(path, "measure the read bandwidth", err);
  }
  double reads = static_cast<double>(n);
  return {reads * static_cast<double>(request_bytes) / seconds, reads / seconds, reader.backend()};
}

}  // namespace powerinfer2::io
