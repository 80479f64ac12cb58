#include "ops/token_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "common/errors.hpp"
#include "ops/dot.hpp"
#include "ops/simd.hpp"

namespace powerinfer2::ops {

void rmsnorm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> out) {
  PWPI_CHECK(w.size() == x.size() && out.size() == x.size());
  double ss = 0.0;
  std::size_t i0 = 0;
#if defined(PWPI_OPS_AVX512)
  __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();  // double sums, 16 at a time
  for (; i0 + 16 <= x.size(); i0 += 16) {
    const __m512d lo = _mm512_cvtps_pd(_mm256_loadu_ps(x.data() + i0));
    const __m512d hi = _mm512_cvtps_pd(_mm256_loadu_ps(x.data() + i0 + 8));
    s0 = _mm512_fmadd_pd(lo, lo, s0);
    s1 = _mm512_fmadd_pd(hi, hi, s1);
  }
  ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
#endif
  for (std::size_t i = i0; i < x.size(); ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps));
  for (std::size_t i = 0; i < x.size(); ++i) out[i] = x[i] * scale * w[i];
}

void rope_table(std::size_t pos, std::size_t n_rot, float base, std::span<float> cos_out, std::span<float> sin_out) {
  PWPI_CHECK(cos_out.size() >= n_rot / 2 && sin_out.size() >= n_rot / 2);
  for (std::size_t i = 0; i < n_rot / 2; ++i) {
    const double theta = static_cast<double>(pos) *
                         std::pow(static_cast<double>(base), -2.0 * static_cast<double>(i) / static_cast<double>(n_rot));
    cos_out[i] = static_cast<float>(std::cos(theta));
    sin_out[i] = static_cast<float>(std::sin(theta));
  }
}

void rope(std::span<float> x, std::size_t n_head, std::size_t head_dim, std::span<const float> cos_t,
          std::span<const float> sin_t) {
  PWPI_CHECK(x.size() == n_head * head_dim && cos_t.size() == sin_t.size() && cos_t.size() * 2 <= head_dim);
  for (std::size_t h = 0; h < n_head; ++h) {
    float* xh = x.data() + h * head_dim;
    for (std::size_t i = 0; i < cos_t.size(); ++i) {
      const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
      xh[2 * i] = x0 * cos_t[i] - x1 * sin_t[i];
      xh[2 * i + 1] = x0 * sin_t[i] + x1 * cos_t[i];
    }
  }
}

void softmax(std::span<float> x) {
  if (x.empty()) return;
  float mx = -std::numeric_limits<float>::infinity();
  std::size_t i = 0;
#if defined(PWPI_OPS_AVX512)
  __m512 vmax = _mm512_set1_ps(mx);
  for (; i + 16 <= x.size(); i += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x.data() + i));
  mx = _mm512_reduce_max_ps(vmax);
#endif
  for (; i < x.size(); ++i) mx = std::max(mx, x[i]);
  double sum = 0.0;
  i = 0;
#if defined(PWPI_OPS_AVX512)
  const __m512 vmx = _mm512_set1_ps(mx);
  __m512 vsum = _mm512_setzero_ps();  // at most 16 x n terms in [0, 1]: float is ample
  for (; i + 16 <= x.size(); i += 16) {
    const __m512 e = ops::simd::exp(_mm512_sub_ps(_mm512_loadu_ps(x.data() + i), vmx));
    _mm512_storeu_ps(x.data() + i, e);
    vsum = _mm512_add_ps(vsum, e);
  }
  sum = _mm512_reduce_add_ps(vsum);
#endif
  for (; i < x.size(); ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (float& v : x) v *= inv;
}

void attend_head(const float* q, const float* k, const float* v, std::size_t kv_stride, std::size_t n_pos,
                 std::size_t head_dim, float* scores, float* out) {
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  for (std::size_t t = 0; t < n_pos; ++t) {
    scores[t] = ops::dot_f32(q, k + t * kv_stride, head_dim) * scale;
  }
  softmax({scores, n_pos});
  std::fill(out, out + head_dim, 0.0f);
  for (std::size_t t = 0; t < n_pos; ++t) {
    const float* vt = v + t * kv_stride;
    const float a = scores[t];
    for (std::size_t d = 0; d < head_dim; ++d) out[d] += a * vt[d];
  }
}

namespace {
constexpr std::size_t kKeyTile = 16;  // keys transposed at a time
}  // namespace

std::size_t attend_group_scratch(std::size_t group, std::size_t n_q, std::size_t max_pos, std::size_t head_dim) {
  const std::size_t row = (max_pos + kKeyTile - 1) / kKeyTile * kKeyTile;
  return group * n_q * row + head_dim * kKeyTile;
}

namespace {

// kt[d][0..16) = k[t0 + j][d] for j < nt (zero beyond): the tile of keys, d-major.
void transpose_keys(const float* k, std::size_t kv_stride, std::size_t t0, std::size_t nt, std::size_t head_dim,
                    float* kt) {
#if defined(PWPI_OPS_AVX512)
  if (head_dim % 16 == 0) {
    for (std::size_t d0 = 0; d0 < head_dim; d0 += 16) {
      __m512 r[16];
      for (std::size_t j = 0; j < 16; ++j)
        r[j] = j < nt ? _mm512_loadu_ps(k + (t0 + j) * kv_stride + d0) : _mm512_setzero_ps();
      ops::simd::transpose16(r);
      for (std::size_t d = 0; d < 16; ++d) _mm512_store_ps(kt + (d0 + d) * kKeyTile, r[d]);
    }
    return;
  }
#endif
  for (std::size_t d = 0; d < head_dim; ++d)
    for (std::size_t j = 0; j < kKeyTile; ++j) kt[d * kKeyTile + j] = j < nt ? k[(t0 + j) * kv_stride + d] : 0.0f;
}

// out[0..head_dim) = sum_t p[t] v[t] over n_pos rows of v.
void weighted_sum(const float* p, const float* v, std::size_t kv_stride, std::size_t n_pos, std::size_t head_dim,
                  float* out) {
#if defined(PWPI_OPS_AVX512)
  if (head_dim % 16 == 0 && head_dim <= 128) {
    const std::size_t nv = head_dim / 16;
    __m512 a[8], b[8];  // two sets of accumulators: independent FMA chains
    for (std::size_t c = 0; c < nv; ++c) a[c] = b[c] = _mm512_setzero_ps();
    std::size_t t = 0;
    for (; t + 2 <= n_pos; t += 2) {
      const __m512 p0 = _mm512_set1_ps(p[t]), p1 = _mm512_set1_ps(p[t + 1]);
      const float* v0 = v + t * kv_stride;
      const float* v1 = v0 + kv_stride;
      for (std::size_t c = 0; c < nv; ++c) {
        a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v0 + 16 * c), a[c]);
        b[c] = _mm512_fmadd_ps(p1, _mm512_loadu_ps(v1 + 16 * c), b[c]);
      }
    }
    if (t < n_pos) {
      const __m512 p0 = _mm512_set1_ps(p[t]);
      for (std::size_t c = 0; c < nv; ++c) a[c] = _mm512_fmadd_ps(p0, _mm512_loadu_ps(v + t * kv_stride + 16 * c), a[c]);
    }
    for (std::size_t c = 0; c < nv; ++c) _mm512_storeu_ps(out + 16 * c, _mm512_add_ps(a[c], b[c]));
    return;
  }
#endif
  std::fill(out, out + head_dim, 0.0f);
  for (std::size_t t = 0; t < n_pos; ++t) {
    const float* vt = v + t * kv_stride;
    for (std::size_t d = 0; d < head_dim; ++d) out[d] += p[t] * vt[d];
  }
}

}  // namespace

void attend_group(const float* q, std::size_t q_stride, std::size_t n_q, std::size_t n_pos0, const float* k,
                  const float* v, std::size_t kv_stride, std::size_t head_dim, std::size_t group, float* scratch,
                  float* out, std::size_t out_stride) {
  PWPI_CHECK(n_q >= 1 && n_pos0 >= 1 && reinterpret_cast<std::uintptr_t>(scratch) % 64 == 0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::size_t max_pos = n_pos0 + n_q - 1;
  const std::size_t row_len = (max_pos + kKeyTile - 1) / kKeyTile * kKeyTile;
  float* kt = scratch;                             // [head_dim][kKeyTile]
  float* scores = scratch + head_dim * kKeyTile;  // [n_q][group][row_len]
  for (std::size_t t0 = 0; t0 < max_pos; t0 += kKeyTile) {
    transpose_keys(k, kv_stride, t0, std::min(kKeyTile, max_pos - t0), head_dim, kt);
    // The (query, head) rows that see key t0, 8 at a time: each kt row is loaded once for 8
    // independent sums.
    const std::size_t i_first = t0 + 1 > n_pos0 ? t0 + 1 - n_pos0 : 0;
    const std::size_t n_rows = (n_q - i_first) * group;
    for (std::size_t r0 = 0; r0 < n_rows; r0 += 8) {
      const std::size_t nr = std::min<std::size_t>(8, n_rows - r0);
      const float* qr[8];
      float* sr[8];
      for (std::size_t u = 0; u < 8; ++u) {
        const std::size_t r = r0 + std::min(u, nr - 1);  // spare lanes repeat the last row
        const std::size_t i = i_first + r / group, h = r % group;
        qr[u] = q + i * q_stride + h * head_dim;
        sr[u] = scores + (i * group + h) * row_len + t0;
      }
#if defined(PWPI_OPS_AVX512)
      __m512 acc[8];
      for (std::size_t u = 0; u < 8; ++u) acc[u] = _mm512_setzero_ps();
      for (std::size_t d = 0; d < head_dim; ++d) {
        const __m512 kd = _mm512_load_ps(kt + d * kKeyTile);
        for (std::size_t u = 0; u < 8; ++u) acc[u] = _mm512_fmadd_ps(_mm512_set1_ps(qr[u][d]), kd, acc[u]);
      }
      const __m512 vs = _mm512_set1_ps(scale);
      for (std::size_t u = 0; u < nr; ++u) _mm512_storeu_ps(sr[u], _mm512_mul_ps(acc[u], vs));
#else
      for (std::size_t u = 0; u < nr; ++u) {
        float acc[kKeyTile] = {};
        for (std::size_t d = 0; d < head_dim; ++d)
          for (std::size_t j = 0; j < kKeyTile; ++j) acc[j] += qr[u][d] * kt[d * kKeyTile + j];
        for (std::size_t j = 0; j < kKeyTile; ++j) sr[u][j] = acc[j] * scale;
      }
#endif
    }
  }
  for (std::size_t i = 0; i < n_q; ++i) {
    for (std::size_t h = 0; h < group; ++h) {
      float* srow = scores + (i * group + h) * row_len;
      softmax({srow, n_pos0 + i});
      weighted_sum(srow, v, kv_stride, n_pos0 + i, head_dim, out + i * out_stride + h * head_dim);
    }
  }
}

void ffn_activate(Activation a, std::span<float> gate, std::span<const float> up) {
  PWPI_CHECK(gate.size() == up.size());
  switch (a) {
    case Activation::swiglu: {
      std::size_t i = 0;
#if defined(PWPI_OPS_AVX512)
      for (; i + 16 <= gate.size(); i += 16) {
        const __m512 g = _mm512_loadu_ps(gate.data() + i);
        const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), ops::simd::exp(_mm512_sub_ps(_mm512_setzero_ps(), g))));
        _mm512_storeu_ps(gate.data() + i, _mm512_mul_ps(silu, _mm512_loadu_ps(up.data() + i)));
      }
#endif
      for (; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
      break;
    }
    case Activation::reglu:
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = std::max(gate[i], 0.0f) * up[i];
      break;
    case Activation::drelu:
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = std::max(gate[i], 0.0f) * std::max(up[i], 0.0f);
      break;
  }
}

}  // namespace powerinfer2::ops
