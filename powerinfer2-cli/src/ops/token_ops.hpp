// The small per-token operations of a llama forward pass, on F32 activations: norms, RoPE,
// attention, the FFN gating. Plain loops: the matrix products dominate (matmul.hpp). Each has a
// double-precision reference in the tests.
#pragma once

#include <cstddef>
#include <span>

#include "ops/activation.hpp"

namespace powerinfer2::ops {

/// out = x / sqrt(mean(x^2) + eps) * w (the sum of squares in double, as ggml does).
void rmsnorm(std::span<const float> x, std::span<const float> w, float eps, std::span<float> out);

/// cos/sin of pos * base^(-2i / n_rot), i in [0, n_rot / 2), computed in double.
void rope_table(std::size_t pos, std::size_t n_rot, float base, std::span<float> cos_out, std::span<float> sin_out);

/// llama.cpp's normal (LLAMA) RoPE on each of the n_head heads of x ([n_head][head_dim]):
/// the pairs (x[2i], x[2i+1]), 2i < n_rot, rotate by the angle whose cos/sin rope_table gave.
void rope(std::span<float> x, std::size_t n_head, std::size_t head_dim, std::span<const float> cos_t,
          std::span<const float> sin_t);

/// In place: x = exp(x - max) / sum.
void softmax(std::span<float> x);

/// One query head against n_pos cached positions: scores = k.q / sqrt(head_dim), softmax,
/// out = sum scores[t] v[t]. k and v hold the head's rows at stride `kv_stride` floats.
/// `scores` has room for n_pos values.
void attend_head(const float* q, const float* k, const float* v, std::size_t kv_stride, std::size_t n_pos,
                 std::size_t head_dim, float* scores, float* out);

/// Causal attention of the `group` query heads that share one kv head, for n_q consecutive
/// query tokens: query i (row i of q, at q_stride floats) sees positions [0, n_pos0 + i) of k
/// and v (rows at kv_stride floats); its head h (h < group) is q[i * q_stride + h * head_dim]
/// and goes to out[i * out_stride + h * head_dim]. Keys are taken 16 at a time, transposed
/// once and used by every query head of the group. `scratch` holds
/// attend_group_scratch(group, n_q, n_pos0 + n_q - 1, head_dim) floats.
/// The same scores, softmax and sums as attend_head, in another summation order.
void attend_group(const float* q, std::size_t q_stride, std::size_t n_q, std::size_t n_pos0, const float* k,
                  const float* v, std::size_t kv_stride, std::size_t head_dim, std::size_t group, float* scratch,
                  float* out, std::size_t out_stride);
std::size_t attend_group_scratch(std::size_t group, std::size_t n_q, std::size_t max_pos, std::size_t head_dim);

/// The FFN gating in place: gate[i] = act(gate[i], up[i]).
void ffn_activate(Activation a, std::span<float> gate, std::span<const float> up);

}  // namespace powerinfer2::ops
