// Storage read bandwidth through io::FlashReader (not a test): MB/s and IOPS for each request
// size, queue depth, access pattern (random 4 KiB-aligned offsets, sequential) and backend.
//
//   bench_flash_reader FILE [--sizes 4K,8K,32K,128K,1M] [--qd 1,8,32] [--seconds 1]
//                           [--backends io_uring,pread] [--pattern random,seq] [--reps 3] [--json]
//
// Each point first reads a pilot (8 MiB, or 4 requests per queue slot), then about --seconds
// worth --reps times (different random offsets each time) and reports the best.
// Reads are O_DIRECT, so the page cache does not inflate the figures (a virtual disk's host
// may still cache).
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "common/errors.hpp"
#include "common/units.hpp"
#include "io/flash_reader.hpp"

namespace io = powerinfer2::io;

int main(int argc, char** argv) {
  std::string path;
  std::vector<std::string> sizes{"4K", "8K", "32K", "128K", "1M"};
  std::vector<unsigned> depths{1, 8, 32};
  std::vector<std::string> backends{"io_uring", "pread"};
  std::vector<std::string> patterns{"random", "seq"};
  double seconds = 1;
  int reps = 3;
  bool json = false;
  CLI::App app{"Storage read bandwidth through FlashReader (O_DIRECT)"};
  app.add_option("file", path, "file to read (a large model)")->required()->check(CLI::ExistingFile);
  app.add_option("--sizes", sizes, "request sizes")->delimiter(',');
  app.add_option("--qd", depths, "queue depths")->delimiter(',');
  app.add_option("--backends", backends, "io_uring, pread")->delimiter(',');
  app.add_option("--pattern", patterns, "random, seq")->delimiter(',');
  app.add_option("--seconds", seconds, "time per point and repetition (about)");
  app.add_option("--reps", reps, "repetitions per point; the best is reported")->check(CLI::PositiveNumber);
  app.add_flag("--json", json, "one JSON object per line");
  CLI11_PARSE(app, argc, argv);

  double load[3] = {};
  if (std::ifstream f("/proc/loadavg"); f) f >> load[0] >> load[1] >> load[2];
  std::fprintf(stderr, "file %s, load average %.2f %.2f %.2f\n", path.c_str(), load[0], load[1], load[2]);
  if (!json)
    std::printf("%-9s %-7s %8s %4s %10s %10s\n", "backend", "pattern", "request", "qd", "MB/s", "IOPS");
  try {
    for (const auto& b : backends) {
      io::ReadBackend want = b == "pread" ? io::ReadBackend::pread_pool : io::ReadBackend::io_uring;
      for (const auto& pattern : patterns) {
        bool random = pattern == "random";
        for (const auto& s : sizes) {
          std::uint64_t req = common::parse_size_arg(s, "--sizes");
          for (unsigned qd : depths) {
            std::uint64_t pilot_bytes = std::max<std::uint64_t>(req * qd * 4, std::uint64_t{8} << 20);
            auto pilot = io::measure_read_bandwidth(path, req, qd, pilot_bytes, random, 1, want);
            auto total = static_cast<std::uint64_t>(pilot.bytes_per_s * seconds);
            io::ReadBandwidth bw;
            for (int rep = 0; rep < reps; ++rep) {
              auto r = io::measure_read_bandwidth(path, req, qd, total, random, 2 + rep, want);
              if (r.bytes_per_s > bw.bytes_per_s) bw = r;
            }
            if (json)
              std::printf(
                  "{\"backend\":\"%s\",\"pattern\":\"%s\",\"request_bytes\":%llu,\"queue_depth\":%u,"
                  "\"bytes_per_s\":%.0f,\"iops\":%.0f}\n",
                  std::string(io::backend_name(bw.backend)).c_str(), pattern.c_str(),
                  static_cast<unsigned long long>(req), qd, bw.bytes_per_s, bw.iops);
            else
              std::printf("%-9s %-7s %8s %4u %10.1f %10.0f\n", b.c_str(), pattern.c_str(), s.c_str(), qd,
                          bw.bytes_per_s / 1e6, bw.iops);
            std::fflush(stdout);
          }
        }
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 4;
  }
  return 0;
}
