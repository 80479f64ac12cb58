#include "engine/kernels.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"
#include "ops/dot.hpp"

namespace powerinfer2::engine {

void rmsnorm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> out) {
  PWPI_CHECK(w.size() == x.size() && out.size() == x.size());
  double ss = 0.0;
  for (float v : x) ss += static_cast<double>(v) * v;
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
  const float mx = *std::max_element(x.begin(), x.end());
  double sum = 0.0;
  for (float& v : x) {
    v = std::exp(v - mx);
    sum += v;
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

void ffn_activate(model::FfnActivation a, std::span<float> gate, std::span<const float> up) {
  PWPI_CHECK(gate.size() == up.size());
  switch (a) {
    case model::FfnActivation::swiglu:
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
      break;
    case model::FfnActivation::reglu:
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = std::max(gate[i], 0.0f) * up[i];
      break;
    case model::FfnActivation::drelu:
      for (std::size_t i = 0; i < gate.size(); ++i) gate[i] = std::max(gate[i], 0.0f) * std::max(up[i], 0.0f);
      break;
  }
}

}  // namespace powerinfer2::engine
