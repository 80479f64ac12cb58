#include "common/rss.hpp"

#include <sys/resource.h>

#include <cstdio>
#include <cstring>

namespace common {

namespace {
// Reads a "Key:   123 kB" line of /proc/self/status.
std::uint64_t status_kib(const char* key) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  std::uint64_t kib = 0;
  const std::size_t key_len = std::strlen(key);
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
      unsigned long long v = 0;
      if (std::sscanf(line + key_len + 1, "%llu", &v) == 1) kib = v;
      break;
    }
  }
  std::fclose(f);
  return kib;
}
}  // namespace

std::uint64_t peak_rss_bytes() {
  std::uint64_t kib = status_kib("VmHWM");
  if (kib == 0) {
    struct rusage ru {};
    if (::getrusage(RUSAGE_SELF, &ru) == 0) kib = static_cast<std::uint64_t>(ru.ru_maxrss);  // KiB on Linux
  }
  return kib * 1024;
}

std::uint64_t current_rss_bytes() { return status_kib("VmRSS") * 1024; }

}  // namespace common
