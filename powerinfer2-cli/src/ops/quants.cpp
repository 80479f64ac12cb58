// Built with -ffp-contract=off (see CMakeLists.txt): ggml's reference rounds x * id and
// x * id + 8.5f as two float operations; a fused multiply-add would change some bytes.
#include "ops/quants.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/errors.hpp"
#include "ops/simd.hpp"

namespace powerinfer2::ops {

void quantize_row_q8_0(const float* x, BlockQ8_0* y, std::size_t n) {
  PWPI_CHECK(n % kQK == 0);
  for (std::size_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.0f;
    for (std::size_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (std::size_t j = 0; j < kQK; ++j) y[b].qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
  }
}

void quantize_row_q4_0(const float* x, BlockQ4_0* y, std::size_t n) {
  PWPI_CHECK(n % kQK == 0);
  for (std::size_t b = 0; b < n / kQK; ++b, x += kQK) {
    float amax = 0.0f, max = 0.0f;  // the first value of largest magnitude, with its sign
    for (std::size_t j = 0; j < kQK; ++j) {
      if (amax < std::fabs(x[j])) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = fp32_to_fp16(d);
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      // x * id lies in [-8, 8], so x * id + 8.5 in [0.5, 16.5]: truncation is floor.
      const int q0 = std::min(15, static_cast<int>(x[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(x[j + kQK / 2] * id + 8.5f));
      y[b].qs[j] = static_cast<std::uint8_t>(q0 | (q1 << 4));
    }
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, std::size_t n) {
  PWPI_CHECK(n % kQK == 0);
  for (std::size_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (std::size_t j = 0; j < kQK; ++j) y[b * kQK + j] = static_cast<float>(x[b].qs[j]) * d;
  }
}

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, std::size_t n) {
  PWPI_CHECK(n % kQK == 0);
  for (std::size_t b = 0; b < n / kQK; ++b) {
    const float d = fp16_to_fp32(x[b].d);
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      y[b * kQK + j] = static_cast<float>((x[b].qs[j] & 15) - 8) * d;
      y[b * kQK + j + kQK / 2] = static_cast<float>((x[b].qs[j] >> 4) - 8) * d;
    }
  }
}

namespace ref {

void quantize_act_q8(const float* x, std::size_t n, std::int8_t* qs, float* d, std::int32_t* sum) {
  PWPI_CHECK(n % kQK == 0);
  for (std::size_t b = 0; b < n / kQK; ++b, x += kQK, qs += kQK) {
    float amax = 0.0f;
    for (std::size_t j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    d[b] = fp16_to_fp32(fp32_to_fp16(db));
    std::int32_t s = 0;
    for (std::size_t j = 0; j < kQK; ++j) {
      qs[j] = static_cast<std::int8_t>(std::round(x[j] * id));
      s += qs[j];
    }
    sum[b] = s;
  }
}

}  // namespace ref

void spread_act_pairs(const Q8Act& x, std::size_t n_blocks, float* d16, std::int32_t* neg_sum16) {
  for (std::size_t p = 0; p < n_blocks / 2; ++p) {
    for (std::size_t l = 0; l < 16; ++l) {
      d16[16 * p + l] = x.d[2 * p + l / 8];
      neg_sum16[16 * p + l] = -x.sum[2 * p + l / 8];
    }
  }
}

void quantize_act_q8(const float* x, std::size_t n, std::int8_t* qs, float* d, std::int32_t* sum) {
#if defined(PWPI_OPS_AVX512)
  PWPI_CHECK(n % kQK == 0);
  const __m512 sign_bit = _mm512_set1_ps(-0.0f);
  for (std::size_t b = 0; b < n / kQK; ++b, x += kQK, qs += kQK) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_andnot_ps(sign_bit, v0), _mm512_andnot_ps(sign_bit, v1)));
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    d[b] = fp16_to_fp32(fp32_to_fp16(db));
    const __m512 vid = _mm512_set1_ps(id);
    __m512i q[2];
    for (int h = 0; h < 2; ++h) {
      // round half away from zero: t = trunc(p), then t + trunc(2 (p - t)) (p - t is exact).
      const __m512 p = _mm512_mul_ps(h ? v1 : v0, vid);
      const __m512 t = _mm512_roundscale_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m512 frac2 = _mm512_mul_ps(_mm512_sub_ps(p, t), _mm512_set1_ps(2.0f));
      const __m512 r = _mm512_add_ps(t, _mm512_roundscale_ps(frac2, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC));
      q[h] = _mm512_cvtps_epi32(r);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * h), _mm512_cvtepi32_epi8(q[h]));
    }
    sum[b] = _mm512_reduce_add_epi32(_mm512_add_epi32(q[0], q[1]));
  }
#elif defined(PWPI_OPS_AVX2)
  PWPI_CHECK(n % kQK == 0);
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  for (std::size_t b = 0; b < n / kQK; ++b, x += kQK, qs += kQK) {
    __m256 v[4];
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      m = _mm256_max_ps(m, _mm256_andnot_ps(sign_bit, v[k]));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float db = amax / 127.0f;
    const float id = db != 0.0f ? 1.0f / db : 0.0f;
    d[b] = fp16_to_fp32(fp32_to_fp16(db));
    const __m256 vid = _mm256_set1_ps(id);
    __m256i qi[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 p = _mm256_mul_ps(v[k], vid);
      const __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __m256 frac2 = _mm256_mul_ps(_mm256_sub_ps(p, t), _mm256_set1_ps(2.0f));
      qi[k] = _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_round_ps(frac2, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC)));
    }
    // int32 -> int8 with saturating packs (values are within -127..127), then undo the
    // lane interleaving of the packs.
    const __m256i w01 = _mm256_packs_epi32(qi[0], qi[1]);
    const __m256i w23 = _mm256_packs_epi32(qi[2], qi[3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), bytes);
    __m256i s = _mm256_add_epi32(_mm256_add_epi32(qi[0], qi[1]), _mm256_add_epi32(qi[2], qi[3]));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    sum[b] = _mm_cvtsi128_si32(s4);
  }
#else
  ref::quantize_act_q8(x, n, qs, d, sum);
#endif
}

void dequantize_row(io::GgmlType type, const void* src, float* out, std::size_t n) {
  switch (type) {
    case io::GgmlType::F32: std::memcpy(out, src, n * sizeof(float)); return;
    case io::GgmlType::F16: fp16_to_fp32_row(static_cast<const fp16_t*>(src), out, n); return;
    case io::GgmlType::Q8_0: dequantize_row_q8_0(static_cast<const BlockQ8_0*>(src), out, n); return;
    case io::GgmlType::Q4_0: dequantize_row_q4_0(static_cast<const BlockQ4_0*>(src), out, n); return;
    default: PWPI_CHECK_MSG(false, "dequantize_row: unsupported type");
  }
}

void quantize_row(io::GgmlType type, const float* x, void* dst, std::size_t n) {
  switch (type) {
    case io::GgmlType::F32: std::memcpy(dst, x, n * sizeof(float)); return;
    case io::GgmlType::F16: fp32_to_fp16_row(x, static_cast<fp16_t*>(dst), n); return;
    case io::GgmlType::Q8_0: quantize_row_q8_0(x, static_cast<BlockQ8_0*>(dst), n); return;
    case io::GgmlType::Q4_0: quantize_row_q4_0(x, static_cast<BlockQ4_0*>(dst), n); return;
    default: PWPI_CHECK_MSG(false, "quantize_row: unsupported type");
  }
}

}  // namespace powerinfer2::ops
