// Number formatting for the subcommands' text output.
#pragma once

#include <cstdint>
#include <iomanip>
#include <sstream>
#include <string>

namespace pipeweaver::cli {

/// `x` with `digits` digits after the point.
inline std::string fixed(double x, int digits) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(digits) << x;
  return s.str();
}

/// Nanoseconds in milliseconds.
inline double ms(std::int64_t ns) {
  return static_cast<double>(ns) * 1e-6;
}

}  // namespace pipeweaver::cli
