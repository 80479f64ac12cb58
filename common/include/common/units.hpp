// Human-readable sizes.
//
// parse_size accepts a non-negative decimal number, optional spaces, and a unit:
//   none or B          bytes
//   K M G T (or KiB MiB GiB TiB, Ki Mi Gi Ti)   powers of 1024
//   KB MB GB TB (or kB)                         powers of 1000
// Units are case-insensitive ("2gib", "512m"). Fractions are exact ("1.5G" is
// 1610612736 bytes) and must come to a whole number of bytes ("1.5B" and "0.1K" are
// rejected rather than rounded). Overflow past 2^64-1 is rejected.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace common {

struct SizeParse {
  std::optional<std::uint64_t> bytes;  // set on success
  std::string error;                   // why not, on failure
};

SizeParse try_parse_size(std::string_view text);

/// Parses or throws UsageError naming `what` (a flag such as "--memory").
std::uint64_t parse_size_arg(std::string_view text, std::string_view what);

/// "512 B", "1.50 KiB", "2.00 GiB": binary units, three significant digits.
std::string format_size(std::uint64_t bytes);

}  // namespace common
