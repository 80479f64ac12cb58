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

#if defined(PWPI_OPS_AVX512)
// Transposes 16 vectors of 16 floats in place (r[i][k] -> r[k][i]): 4 rounds of 16 shuffles.
inline void transpose16(__m512 r[16]) {
  __m512 a[16];
  for (int i = 0; i < 8; ++i) {  // 32-bit interleave of row pairs, within 128-bit lanes
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  __m512 b[16];  // b[4q + c], lane j: column 4j + c of rows 4q..4q+3
  for (int q = 0; q < 4; ++q) {
    const __m512d a0 = _mm512_castps_pd(a[4 * q]), a1 = _mm512_castps_pd(a[4 * q + 1]);
    const __m512d a2 = _mm512_castps_pd(a[4 * q + 2]), a3 = _mm512_castps_pd(a[4 * q + 3]);
    b[4 * q] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[4 * q + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[4 * q + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[4 * q + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int c = 0; c < 4; ++c) {  // gather lane j of b[c], b[4 + c], b[8 + c], b[12 + c]
    const __m512 c1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), c2 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xee);
    const __m512 c3 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44), c4 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xee);
    r[c] = _mm512_shuffle_f32x4(c1, c3, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(c1, c3, 0xdd);
    r[8 + c] = _mm512_shuffle_f32x4(c2, c4, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(c2, c4, 0xdd);
  }
}

// e^x in every lane, within 1 ulp of the exact value over the float range (tested against
// std::exp): x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, so r is exact), a degree-7
// polynomial for e^r, then 2^n by scalef. Inputs are clamped to [-104, 89] first: below,
// e^x is 0 in float; above, +inf; NaN stays NaN (min / max return their second operand
// when one is NaN).
inline __m512 exp(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), _mm512_min_ps(_mm512_set1_ps(89.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);  // ln2's high part: 8 bits
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);       // ... and the rest
  // Taylor coefficients 1/k! to k = 7: on |r| <= 0.347 the truncation error is < 1e-8.
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

#endif

}  // namespace powerinfer2::ops::simd
