// Which SIMD path the kernels take, fixed at compile time from the build's target flags
// (-march=native by default): PWPI_OPS_AVX512 (AVX-512 F/BW/DQ/VL with VNNI and VBMI, e.g.
// Ice Lake and later Xeons, Zen 4), else PWPI_OPS_AVX2 (AVX2 + FMA + F16C), else scalar.
// Internal to src/ops.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__AVX512VBMI__)
#define PWPI_OPS_AVX512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define PWPI_OPS_AVX2 1
#endif

#include "ops/intrin.hpp"

namespace powerinfer2::ops::simd {

#if defined(PWPI_OPS_AVX2) || defined(PWPI_OPS_AVX512)
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

}  // namespace powerinfer2::ops::simd
