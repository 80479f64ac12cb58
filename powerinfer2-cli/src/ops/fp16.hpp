// Half-precision formats as ggml stores them: IEEE binary16 (F16) and bfloat16 (BF16), both
// as their 16 raw bits. Conversions round to nearest, ties to even, like ggml (F16C's
// vcvtps2ph with imm 0, numpy's astype(float16)); NaNs stay NaN, quieted, keeping the top
// payload bits as F16C does. The scalar versions in ref:: give the same bits as the F16C
// instructions for every input, so the build's instruction set never changes a file.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>

#include "ops/intrin.hpp"

namespace powerinfer2::ops {

using fp16_t = std::uint16_t;  // binary16 bits
using bf16_t = std::uint16_t;  // bfloat16 bits (the top half of a binary32)

namespace ref {

/// binary16 -> binary32 (exact).
constexpr float fp16_to_fp32(fp16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f)  // inf, or NaN made quiet (bit 22) with its payload
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13) | (mant ? 0x400000u : 0u));
  if (exp == 0) {
    if (mant == 0) return std::bit_cast<float>(sign);
    // Subnormal: mant * 2^-24, exact in binary32.
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return std::bit_cast<float>(sign | std::bit_cast<std::uint32_t>(v));
  }
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

/// binary32 -> binary16, round to nearest even; overflow gives inf.
constexpr fp16_t fp32_to_fp16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  std::uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u)  // NaN: quiet, top 9 payload bits kept
    return static_cast<fp16_t>(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  if (ax >= 0x477ff000u)  // >= 65520 = halfway between 65504 and 2^16: rounds to inf
    return static_cast<fp16_t>(sign | 0x7c00u);
  if (ax >= 0x38800000u) {  // normal half (>= 2^-14): rebias the exponent by -112, round at bit 13
    ax += 0xc8000fffu + ((ax >> 13) & 1u);
    return static_cast<fp16_t>(sign | (ax >> 13));
  }
  // Subnormal or zero: adding 0.5 puts the value in units of 2^-24 (0.5's ulp) into the
  // low mantissa bits, rounded by the FPU to nearest even; 1024 units is the smallest normal.
  const float v = std::bit_cast<float>(ax) + 0.5f;
  return static_cast<fp16_t>(sign | (std::bit_cast<std::uint32_t>(v) - 0x3f000000u));
}

void fp16_to_fp32_row(const fp16_t* x, float* y, std::size_t n);
void fp32_to_fp16_row(const float* x, fp16_t* y, std::size_t n);

}  // namespace ref

inline float fp16_to_fp32(fp16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);
#else
  return ref::fp16_to_fp32(h);
#endif
}

inline fp16_t fp32_to_fp16(float f) {
#if defined(__F16C__)
  return static_cast<fp16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
#else
  return ref::fp32_to_fp16(f);
#endif
}

/// bfloat16 -> binary32 (exact).
constexpr float bf16_to_fp32(bf16_t h) { return std::bit_cast<float>(static_cast<std::uint32_t>(h) << 16); }

/// binary32 -> bfloat16, round to nearest even; NaN made quiet (as ggml's
/// ggml_compute_fp32_to_bf16).
constexpr bf16_t fp32_to_bf16(float f) {
  const std::uint32_t x = std::bit_cast<std::uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<bf16_t>((x >> 16) | 64u);
  return static_cast<bf16_t>((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/// Rows of n values; SIMD (F16C, AVX-512) where the build has it, same bits as ref::.
void fp16_to_fp32_row(const fp16_t* x, float* y, std::size_t n);
void fp32_to_fp16_row(const float* x, fp16_t* y, std::size_t n);
void bf16_to_fp32_row(const bf16_t* x, float* y, std::size_t n);

}  // namespace powerinfer2::ops
