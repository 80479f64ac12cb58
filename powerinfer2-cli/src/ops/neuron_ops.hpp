// Per-neuron kernels of the sparse FFN: a dot product of one weight row (a bundle's gate or
// up part) with the layer input, and y += a * row (a bundle's down column) — for the bundle
// types F32, F16, Q8_0 and Q4_0. The quantized dots use the dense engine's kernels on the
// input quantized to Q8_0 once per token; axpy dequantizes on the fly. Each has a scalar
// reference in ref:: that it is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

#include "io/gguf_types.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::ops {

/// One token's FFN input in the forms the dots need: floats (F32 / F16 rows) and Q8_0
/// (Q8_0 / Q4_0 rows).
struct NeuronInput {
  const float* x = nullptr;  // [n]
  Q8Act q;                   // [n / 32 blocks], set for quantized row types
};

/// row . x over n elements of a row of `type`.
float neuron_dot(io::GgmlType type, const std::uint8_t* row, const NeuronInput& x, std::size_t n);

/// y[0..n) += a * row (row of `type`, dequantized).
void neuron_axpy(io::GgmlType type, const std::uint8_t* row, float a, float* y, std::size_t n);

namespace ref {
void neuron_axpy(io::GgmlType type, const std::uint8_t* row, float a, float* y, std::size_t n);
}  // namespace ref

}  // namespace powerinfer2::ops
