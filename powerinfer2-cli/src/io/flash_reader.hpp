// Reading a model file from storage for the sparse engine: cold neuron clusters, 4 KiB
// aligned, many reads in flight, with O_DIRECT so that no page cache stands between the
// engine and the device (every byte read really comes from the disk).
//
// One I/O thread owns an io_uring ring and keeps up to queue_depth reads in it. Callers hand
// it batches of requests (submit, thread-safe, never blocks on I/O) and learn of each
// completion only through the request's own atomic flag (poll it, or wait_done). Where
// io_uring is unavailable (kernel, seccomp) a pool of threads issues pread calls instead; where
// the filesystem refuses O_DIRECT the file is read buffered and each range read is dropped from
// the page cache afterwards. backend_description() says which is in use.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace powerinfer2::io {

/// O_DIRECT alignment of offsets, lengths and destination buffers (the page size, which
/// covers every logical block size in use).
inline constexpr std::size_t kDirectAlign = 4096;

/// Values of ReadRequest::done.
inline constexpr std::uint32_t kReadPending = 0;
inline constexpr std::uint32_t kReadDone = 1;
inline constexpr std::uint32_t kReadFailed = 2;

/// One read: `length` bytes at file `offset` into `dest`. offset, length and dest are
/// multiples of kDirectAlign; length is at most 1 GiB. submit() stores kReadPending in *done;
/// the reader stores kReadDone (release) once the bytes are in dest, kReadFailed on error, then
/// notifies waiters.
/// The flag may be destroyed as soon as it reads non-zero; dest must live until then.
/// A read may cover the end of the file as long as it stays within the file's last 4 KiB
/// block: the bytes past the end read as zeros.
struct ReadRequest {
  std::uint64_t offset = 0;
  std::size_t length = 0;
  void* dest = nullptr;
  std::atomic<std::uint32_t>* done = nullptr;
};

enum class ReadBackend {
  io_uring,        // one I/O thread, io_uring, O_DIRECT
  pread_pool,      // min(queue depth, 8) threads calling pread, O_DIRECT
  buffered_pread,  // the pread pool without O_DIRECT (refused by the filesystem), page cache dropped
};

/// "io_uring", "pread_pool", "buffered_pread".
std::string_view backend_name(ReadBackend backend);

class FlashReader {
 public:
  /// Opens `path` O_RDONLY|O_DIRECT (common::IoError naming the file on failure) and starts
  /// the I/O thread(s). The backend is io_uring unless `force` (or, without it, the environment
  /// variable PWPI_IO_BACKEND=pread|io_uring) says otherwise or io_uring_queue_init fails (then
  /// pread_pool). If the filesystem refuses O_DIRECT (EINVAL at open or at a first probe read)
  /// the backend is buffered_pread whatever was asked; forcing buffered_pread opens without it.
  /// queue_depth: reads in flight at most, 1..4096.
  explicit FlashReader(const std::string& path, unsigned queue_depth = 64,
                       std::optional<ReadBackend> force = {});
  /// Completes every submitted read (queued ones too), then joins the I/O thread(s).
  ~FlashReader();
  FlashReader(const FlashReader&) = delete;
  FlashReader& operator=(const FlashReader&) = delete;

  ReadBackend backend() const;
  /// E.g. "io_uring, O_DIRECT, queue depth 64" or "pread pool of 8 threads, O_DIRECT, queue
  /// depth 64 (io_uring unavailable: Operation not permitted)".
  std::string backend_description() const;
  const std::string& path() const;
  std::uint64_t file_size() const;
  unsigned queue_depth() const;

  /// Hands the requests to the I/O thread, in order; returns without waiting for any I/O.
  /// Thread-safe. A misaligned request is a bug (common::InternalError, nothing of the batch
  /// is queued); a request past the end of the file fails at once (flag kReadFailed).
  void submit(std::span<const ReadRequest> requests);
  /// Blocks until every read submitted so far (by any thread) has completed.
  void wait_idle();
  /// The first failure, one line naming the file and the offset ("" if none).
  std::string last_error() const;

  struct Stats {
    std::uint64_t reads = 0;  // requests completed successfully
    std::uint64_t bytes = 0;  // their lengths summed
    double busy_s = 0;        // time with at least one read in flight
  };
  Stats stats() const;
  void reset_stats();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Waits until `flag` is non-zero (spins briefly, then sleeps in std::atomic::wait) and
/// returns it (acquire): kReadDone or kReadFailed.
std::uint32_t wait_done(const std::atomic<std::uint32_t>& flag);

/// Storage read bandwidth for the planner: reads about total_bytes of `path` (at least one
/// request) in requests of request_bytes (a multiple of kDirectAlign, at most the file size)
/// with queue_depth reads in flight, at random kDirectAlign-aligned offsets or sequentially
/// (wrapping at the end of the file), through a FlashReader (so PWPI_IO_BACKEND applies).
struct ReadBandwidth {
  double bytes_per_s = 0;
  double iops = 0;
  ReadBackend backend = ReadBackend::io_uring;
};
ReadBandwidth measure_read_bandwidth(const std::string& path, std::size_t request_bytes, unsigned queue_depth,
                                     std::uint64_t total_bytes, bool random, std::uint64_t seed = 1,
                                     std::optional<ReadBackend> force = {});

}  // namespace powerinfer2::io
