// Dot products of one weight row with one activation row, for the weight types of the
// dense engine. The quantized ones multiply bytes by bytes (integer dot products on
// activations quantized to Q8_0, as llama.cpp does) and scale each 32-block's integer sum
// by the two block scales. Each has a scalar reference in ref:: that it is tested against;
// the SIMD versions (AVX-512 VNNI, AVX2/FMA) are chosen when the build targets them.
#pragma once

#include <cstddef>

#include "ops/fp16.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::ops {

/// The instruction set the kernels were built for: "avx512-vnni", "avx2" or "scalar".
const char* simd_name();

float dot_f32(const float* a, const float* b, std::size_t n);
float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n);
/// The same sums for matvec, where the weights `a` stream from memory once: the AVX-512
/// versions prefetch a's bytes a few KiB ahead as they go (reading that far past the row is
/// harmless: prefetches never fault). Other builds: the plain ones.
float dot_f32_streaming(const float* a, const float* b, std::size_t n);
float dot_f16_f32_streaming(const fp16_t* a, const float* b, std::size_t n);
/// n_blocks blocks of 32: sum over blocks of d_w * d_x * sum(q_w * q_x).
float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks);
/// The same with q_w - 8 for the 4-bit values.
float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks);

/// Scalar references: the same sums, accumulated in double (the per-block integer sums
/// are exact in both, so the SIMD versions differ only by float rounding).
namespace ref {
float dot_f32(const float* a, const float* b, std::size_t n);
float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n);
float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks);
float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks);
}  // namespace ref

}  // namespace powerinfer2::ops
