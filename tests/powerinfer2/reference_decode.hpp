// Weight rows decoded to double straight from their bytes, for the tests' references: written
// from the GGML block layouts, independent of src/ops (whose dequantizers are under test).
//   F16:  IEEE half, little-endian
//   Q8_0: 32-value blocks of {f16 d; int8 q[32]}, x_j = d q_j                      (34 bytes)
//   Q4_0: 32-value blocks of {f16 d; u8 q[16]}, x_j = d ((q_j & 15) - 8),
//         x_(j+16) = d ((q_j >> 4) - 8)                                            (18 bytes)
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include "io/gguf_types.hpp"

namespace refdec {

inline double half_to_double(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant ? NAN : sign * INFINITY;
  return sign * std::ldexp(1024 + mant, exp - 25);
}

inline double half_at(const std::uint8_t* p) { return half_to_double(static_cast<std::uint16_t>(p[0] | p[1] << 8)); }

/// out[0..n) = the n values of a row of `type` starting at `row`.
inline void decode_row(powerinfer2::io::GgmlType type, const std::uint8_t* row, std::size_t n, double* out) {
  using powerinfer2::io::GgmlType;
  switch (type) {
    case GgmlType::F32:
      for (std::size_t i = 0; i < n; ++i) {
        float v;
        std::memcpy(&v, row + 4 * i, 4);
        out[i] = v;
      }
      return;
    case GgmlType::F16:
      for (std::size_t i = 0; i < n; ++i) out[i] = half_at(row + 2 * i);
      return;
    case GgmlType::Q8_0:
      for (std::size_t k = 0; k < n / 32; ++k) {
        const std::uint8_t* b = row + 34 * k;
        const double d = half_at(b);
        for (std::size_t j = 0; j < 32; ++j) out[32 * k + j] = d * static_cast<std::int8_t>(b[2 + j]);
      }
      return;
    case GgmlType::Q4_0:
      for (std::size_t k = 0; k < n / 32; ++k) {
        const std::uint8_t* b = row + 18 * k;
        const double d = half_at(b);
        for (std::size_t j = 0; j < 16; ++j) {
          out[32 * k + j] = d * ((b[2 + j] & 15) - 8);
          out[32 * k + j + 16] = d * ((b[2 + j] >> 4) - 8);
        }
      }
      return;
    default: throw std::logic_error("refdec::decode_row: unexpected tensor type");
  }
}

}  // namespace refdec
