#include "ops/neuron_ops.hpp"

#include "common/errors.hpp"
#include "ops/dot.hpp"
#include "ops/fp16.hpp"
#include "ops/simd.hpp"

namespace powerinfer2::ops {

float neuron_dot(io::GgmlType type, const std::uint8_t* row, const NeuronInput& x, std::size_t n) {
  switch (type) {
    case io::GgmlType::F32: return dot_f32(reinterpret_cast<const float*>(row), x.x, n);
    case io::GgmlType::F16: return dot_f16_f32(reinterpret_cast<const fp16_t*>(row), x.x, n);
    case io::GgmlType::Q8_0: return dot_q8_0_q8(reinterpret_cast<const BlockQ8_0*>(row), x.q, n / 32);
    case io::GgmlType::Q4_0: return dot_q4_0_q8(reinterpret_cast<const BlockQ4_0*>(row), x.q, n / 32);
    default: PWPI_CHECK_MSG(false, "neuron_dot: unsupported type");
  }
  return 0.0f;
}

namespace ref {
void neuron_axpy(io::GgmlType type, const std::uint8_t* row, float a, float* y, std::size_t n) {
  switch (type) {
    case io::GgmlType::F32: {
      const auto* w = reinterpret_cast<const float*>(row);
      for (std::size_t i = 0; i < n; ++i) y[i] += a * w[i];
      break;
    }
    case io::GgmlType::F16: {
      const auto* w = reinterpret_cast<const fp16_t*>(row);
      for (std::size_t i = 0; i < n; ++i) y[i] += a * fp16_to_fp32(w[i]);
      break;
    }
    case io::GgmlType::Q8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      for (std::size_t k = 0; k < n / 32; ++k) {
        const float s = a * fp16_to_fp32(b[k].d);
        for (std::size_t j = 0; j < 32; ++j) y[32 * k + j] += s * static_cast<float>(b[k].qs[j]);
      }
      break;
    }
    case io::GgmlType::Q4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row);
      for (std::size_t k = 0; k < n / 32; ++k) {
        const float s = a * fp16_to_fp32(b[k].d);
        for (std::size_t j = 0; j < 16; ++j) {
          y[32 * k + j] += s * static_cast<float>((b[k].qs[j] & 0x0F) - 8);
          y[32 * k + j + 16] += s * static_cast<float>((b[k].qs[j] >> 4) - 8);
        }
      }
      break;
    }
    default: PWPI_CHECK_MSG(false, "neuron_axpy: unsupported type");
  }
}
}  // namespace ref

void neuron_axpy(io::GgmlType type, const std::uint8_t* row, float a, float* y, std::size_t n) {
#if defined(PWPI_OPS_AVX512)
  const __m512 va = _mm512_set1_ps(a);
  switch (type) {
    case io::GgmlType::F32: {
      const auto* w = reinterpret_cast<const float*>(row);
      std::size_t i = 0;
      for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(w + i), _mm512_loadu_ps(y + i)));
      for (; i < n; ++i) y[i] += a * w[i];
      return;
    }
    case io::GgmlType::F16: {
      const auto* w = reinterpret_cast<const fp16_t*>(row);
      std::size_t i = 0;
      for (; i + 16 <= n; i += 16) {
        const __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i)));
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, wv, _mm512_loadu_ps(y + i)));
      }
      for (; i < n; ++i) y[i] += a * fp16_to_fp32(w[i]);
      return;
    }
    case io::GgmlType::Q8_0: {
      const auto* b = reinterpret_cast<const BlockQ8_0*>(row);
      for (std::size_t k = 0; k < n / 32; ++k) {
        const __m512 s = _mm512_set1_ps(a * fp16_to_fp32(b[k].d));
        const __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs));
        const __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs + 16));
        float* yk = y + 32 * k;
        _mm512_storeu_ps(yk, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)), _mm512_loadu_ps(yk)));
        _mm512_storeu_ps(yk + 16,
                         _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)), _mm512_loadu_ps(yk + 16)));
      }
      return;
    }
    case io::GgmlType::Q4_0: {
      const auto* b = reinterpret_cast<const BlockQ4_0*>(row);
      const __m512i eight = _mm512_set1_epi32(8);
      const __m512i low = _mm512_set1_epi32(0x0F);
      for (std::size_t k = 0; k < n / 32; ++k) {
        const __m512 s = _mm512_set1_ps(a * fp16_to_fp32(b[k].d));
        const __m512i q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[k].qs)));
        const __m512i lo = _mm512_sub_epi32(_mm512_and_si512(q, low), eight);
        const __m512i hi = _mm512_sub_epi32(_mm512_srli_epi32(q, 4), eight);
        float* yk = y + 32 * k;
        _mm512_storeu_ps(yk, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(lo), _mm512_loadu_ps(yk)));
        _mm512_storeu_ps(yk + 16, _mm512_fmadd_ps(s, _mm512_cvtepi32_ps(hi), _mm512_loadu_ps(yk + 16)));
      }
      return;
    }
    default: break;
  }
#endif
  ref::neuron_axpy(type, row, a, y, n);
}

}  // namespace powerinfer2::ops
