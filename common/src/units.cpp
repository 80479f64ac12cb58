#include "common/units.hpp"

#include <cctype>
#include <cstdio>

#include "common/errors.hpp"

namespace common {

namespace {

__extension__ typedef unsigned __int128 u128;  // exact arithmetic for mantissa x unit

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Multiplier of a unit suffix, or 0 when unknown.
u128 unit_multiplier(std::string_view unit) {
  const std::string u = lower(unit);
  if (u.empty() || u == "b") return 1;
  const char prefixes[] = {'k', 'm', 'g', 't', 'p'};
  for (int i = 0; i < 5; ++i) {
    if (u[0] != prefixes[i]) continue;
    const std::string rest = u.substr(1);
    u128 bin = 1, dec = 1;
    for (int k = 0; k <= i; ++k) {
      bin *= 1024;
      dec *= 1000;
    }
    if (rest.empty() || rest == "i" || rest == "ib") return bin;
    if (rest == "b") return dec;
    return 0;
  }
  return 0;
}

}  // namespace

SizeParse try_parse_size(std::string_view text) {
  SizeParse r;
  std::size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
  std::size_t end = text.size();
  while (end > i && std::isspace(static_cast<unsigned char>(text[end - 1]))) --end;
  const std::string_view s = text.substr(i, end - i);
  if (s.empty()) {
    r.error = "an empty size";
    return r;
  }
  if (s[0] == '-') {
    r.error = "a negative size";
    return r;
  }
  // Digits, with one optional '.', as an exact integer mantissa and a decimal exponent.
  u128 mantissa = 0, scale = 1;
  std::size_t p = s[0] == '+' ? 1 : 0;
  bool digits = false, dot = false;
  for (; p < s.size(); ++p) {
    char c = s[p];
    if (c >= '0' && c <= '9') {
      digits = true;
      if (mantissa > (static_cast<u128>(1) << 100)) {
        r.error = "a number too large";
        return r;
      }
      mantissa = mantissa * 10 + static_cast<unsigned>(c - '0');
      if (dot) scale *= 10;
      if (scale > (static_cast<u128>(1) << 60)) {
        r.error = "too many decimal places";
        return r;
      }
    } else if (c == '.' && !dot) {
      dot = true;
    } else {
      break;
    }
  }
  if (!digits) {
    r.error = "no number";
    return r;
  }
  std::size_t u = p;
  while (u < s.size() && s[u] == ' ') ++u;
  const std::string_view unit = s.substr(u);
  const u128 mult = unit_multiplier(unit);
  if (mult == 0) {
    r.error = "an unknown unit '" + std::string(unit) + "' (use B, K/KiB, M/MiB, G/GiB, T/TiB, or KB/MB/GB/TB)";
    return r;
  }
  const u128 product = mantissa * mult;
  if (product % scale != 0) {
    r.error = "a fraction of a byte";
    return r;
  }
  const u128 bytes = product / scale;
  if (bytes > static_cast<u128>(UINT64_MAX)) {
    r.error = "a size beyond 2^64-1 bytes";
    return r;
  }
  r.bytes = static_cast<std::uint64_t>(bytes);
  return r;
}

std::uint64_t parse_size_arg(std::string_view text, std::string_view what) {
  SizeParse r = try_parse_size(text);
  if (!r.bytes) {
    throw UsageError(std::string(what) + ": expected a size such as 512M, 2GiB or 1.5G, got '" +
                     std::string(text) + "' (" + r.error + ")");
  }
  return *r.bytes;
}

std::string format_size(std::uint64_t bytes) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double v = static_cast<double>(bytes);
  int k = 0;
  while (v >= 1024.0 && k < 6) {
    v /= 1024.0;
    ++k;
  }
  // Three significant digits; a value that rounds up to 1024 moves to the next unit.
  char buf[32];
  const char* fmt = v < 9.995 ? "%.2f %s" : v < 99.95 ? "%.1f %s" : "%.0f %s";
  std::snprintf(buf, sizeof buf, fmt, v, units[k]);
  if (std::string_view(buf).starts_with("1024") && k < 6) std::snprintf(buf, sizeof buf, "1.00 %s", units[k + 1]);
  return buf;
}

}  // namespace common
