// ggml's Q8_0 and Q4_0 block formats, and their quantizers exactly as ggml's reference
// quantizer (quantize_row_q8_0_ref / quantize_row_q4_0_ref, which llama.cpp's quantize tool
// uses without an importance matrix): same scale, same rounding, so a file quantized here
// is byte-identical to llama.cpp's for the same F32 input.
//
// Activations are quantized to Q8_0 on the fly for the integer dot products (as llama.cpp
// does for Q8_0 and Q4_0 weights), into a split layout (Q8Act) that the kernels read.
#pragma once

#include <cstddef>
#include <cstdint>

#include "io/gguf_types.hpp"
#include "ops/fp16.hpp"

namespace powerinfer2::ops {

/// Elements per Q8_0 / Q4_0 block (ggml's QK8_0, QK4_0).
inline constexpr std::size_t kQK = 32;

/// 32 values v[i] = qs[i] * d.
struct BlockQ8_0 {
  fp16_t d;
  std::int8_t qs[kQK];
};
/// 32 values v[i] = (q[i] - 8) * d, q[i] in 0..15: q[i] = qs[i] & 15 for i < 16,
/// q[i] = qs[i - 16] >> 4 for i >= 16.
struct BlockQ4_0 {
  fp16_t d;
  std::uint8_t qs[kQK / 2];
};
static_assert(sizeof(BlockQ8_0) == 34 && alignof(BlockQ8_0) == 2, "ggml's block_q8_0 layout");
static_assert(sizeof(BlockQ4_0) == 18 && alignof(BlockQ4_0) == 2, "ggml's block_q4_0 layout");

/// n values (a multiple of 32) into n / 32 blocks. Q8_0: d = max|x| / 127, q = round(x / d)
/// (half away from zero). Q4_0: d = (the value of largest magnitude) / -8,
/// q = min(15, trunc(x / d + 8.5)).
void quantize_row_q8_0(const float* x, BlockQ8_0* y, std::size_t n);
void quantize_row_q4_0(const float* x, BlockQ4_0* y, std::size_t n);
/// n / 32 blocks into n values.
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, std::size_t n);
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, std::size_t n);

/// One row of n values (a multiple of 32 for the quantized types) of type F32, F16, Q8_0 or
/// Q4_0 to floats, and floats to that type (ggml's reference rounding); other types are a bug.
void dequantize_row(io::GgmlType type, const void* src, float* out, std::size_t n);
void quantize_row(io::GgmlType type, const float* x, void* dst, std::size_t n);

/// Activations quantized to Q8_0, split into arrays: qs and d are exactly what
/// quantize_row_q8_0 writes (d widened to float), and sum[b] is the sum of block b's 32
/// values, with which the kernels correct products of biased (unsigned) weight bytes.
struct Q8Act {
  const std::int8_t* qs = nullptr;   // [n_blocks * 32]
  const float* d = nullptr;          // [n_blocks]
  const std::int32_t* sum = nullptr; // [n_blocks]
  /// Optional, 64-byte aligned (see spread_act_pairs): for each pair of blocks, d and -sum
  /// repeated over 8 lanes per block, [n_blocks / 2][16]; the AVX-512 dot products then load
  /// them instead of spreading them for every weight row.
  const float* d16 = nullptr;
  const std::int32_t* neg_sum16 = nullptr;
};

/// Quantizes n values (a multiple of 32) of x into qs[n], d[n / 32], sum[n / 32].
/// SIMD where the build has it; the same bytes as ref::quantize_act_q8.
void quantize_act_q8(const float* x, std::size_t n, std::int8_t* qs, float* d, std::int32_t* sum);

/// Fills d16[n_blocks / 2][16] and neg_sum16[n_blocks / 2][16] from x.d and x.sum (Q8Act's
/// optional spread form; a trailing odd block is not included).
void spread_act_pairs(const Q8Act& x, std::size_t n_blocks, float* d16, std::int32_t* neg_sum16);

namespace ref {
void quantize_act_q8(const float* x, std::size_t n, std::int8_t* qs, float* d, std::int32_t* sum);
}  // namespace ref

}  // namespace powerinfer2::ops
