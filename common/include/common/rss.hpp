// Resident memory of this process, from /proc/self/status (Linux).
#pragma once

#include <cstdint>

namespace common {

/// Peak resident set size (VmHWM), in bytes; 0 if unavailable.
std::uint64_t peak_rss_bytes();

/// Resident set size now (VmRSS), in bytes; 0 if unavailable.
std::uint64_t current_rss_bytes();

}  // namespace common
