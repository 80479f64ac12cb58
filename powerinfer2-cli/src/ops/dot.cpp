#include "ops/dot.hpp"

#include <cstring>

#include "ops/simd.hpp"

namespace powerinfer2::ops {

const char* simd_name() {
#if defined(PWPI_OPS_AVX512)
  return "avx512-vnni";
#elif defined(PWPI_OPS_AVX2)
  return "avx2";
#else
  return "scalar";
#endif
}

namespace ref {

float dot_f32(const float* a, const float* b, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(a[i]) * static_cast<double>(b[i]);
  return static_cast<float>(s);
}

float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n) {
  double s = 0.0;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<double>(fp16_to_fp32(a[i])) * static_cast<double>(b[i]);
  return static_cast<float>(s);
}

float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks) {
  double s = 0.0;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    std::int32_t sumi = 0;
    for (std::size_t j = 0; j < kQK; ++j) sumi += w[b].qs[j] * x.qs[b * kQK + j];
    s += static_cast<double>(sumi) * static_cast<double>(fp16_to_fp32(w[b].d) * x.d[b]);
  }
  return static_cast<float>(s);
}

float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks) {
  double s = 0.0;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    std::int32_t sumi = 0;
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      sumi += ((w[b].qs[j] & 15) - 8) * x.qs[b * kQK + j];
      sumi += ((w[b].qs[j] >> 4) - 8) * x.qs[b * kQK + j + kQK / 2];
    }
    s += static_cast<double>(sumi) * static_cast<double>(fp16_to_fp32(w[b].d) * x.d[b]);
  }
  return static_cast<float>(s);
}

}  // namespace ref

#if defined(PWPI_OPS_AVX512)

namespace {

// Lanes 0-7 take element 0, lanes 8-15 element 1: spreads two per-block values over the
// 8 int32 lanes that dpbusd fills for each block of a pair.
alignas(64) constexpr std::int32_t kPairIdx[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
// 16-bit word index of each block's d within 64 bytes loaded at a pair of blocks.
alignas(64) constexpr std::int16_t kQ8PairD[32] = {0, 0, 0, 0, 0, 0, 0, 0, 17, 17, 17, 17, 17, 17, 17, 17};
alignas(64) constexpr std::int16_t kQ4PairD[32] = {0, 0, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9};
// A Q4_0 pair loaded from its first byte: qs0 at bytes 2..17, qs1 at 20..35. Each 16 bytes
// are taken twice, the second copy shifted right by 4 (high nibbles = elements 16..31).
alignas(64) constexpr std::uint8_t kQ4PairQs[64] = {
    2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,  //
    2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17,  //
    20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,  //
    20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
alignas(64) constexpr std::int64_t kQ4PairShift[8] = {0, 0, 4, 4, 0, 0, 4, 4};

inline __m512i load_idx(const void* p) { return _mm512_load_si512(p); }

// Two per-block values of a pair (b, b+1), each repeated over its block's 8 lanes.
inline __m512i pair_i32(const std::int32_t* v, __m512i pair_idx) {
  return _mm512_permutexvar_epi32(pair_idx, _mm512_castsi128_si512(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(v))));
}
inline __m512 pair_f32(const float* v, __m512i pair_idx) {
  return _mm512_permutexvar_ps(pair_idx, _mm512_castsi512_ps(_mm512_castsi128_si512(
                                             _mm_loadl_epi64(reinterpret_cast<const __m128i*>(v)))));
}

inline __mmask16 tail_mask16(std::size_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

// How far ahead of the weight bytes being read the streaming dot products prefetch.
constexpr std::size_t kStreamAhead = 8192;

// The F32 / F16 dot products; kStream adds a prefetch (into L2) of the weight line
// kStreamAhead bytes ahead of each one read, spread through the loop (matvec: the weights
// stream from memory once, and the core keeps more line reads in flight this way than with
// a burst of prefetches per row: measured on a 1 GiB F16 matrix with 2 threads, 20 -> 28 GB/s).
template <bool kStream>
float dot_f32_impl(const float* a, const float* b, std::size_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if constexpr (kStream) {
      const char* p = reinterpret_cast<const char*>(a + i) + kStreamAhead;
      for (std::size_t k = 0; k < 4; ++k) _mm_prefetch(p + 64 * k, _MM_HINT_T1);
    }
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    acc1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

template <bool kStream>
float dot_f16_f32_impl(const fp16_t* a, const float* b, std::size_t n) {
  auto load_h = [&](std::size_t i) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i))); };
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps();
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if constexpr (kStream) {
      const char* p = reinterpret_cast<const char*>(a + i) + kStreamAhead;
      _mm_prefetch(p, _MM_HINT_T1);
      _mm_prefetch(p + 64, _MM_HINT_T1);
    }
    acc0 = _mm512_fmadd_ps(load_h(i), _mm512_loadu_ps(b + i), acc0);
    acc1 = _mm512_fmadd_ps(load_h(i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    acc2 = _mm512_fmadd_ps(load_h(i + 32), _mm512_loadu_ps(b + i + 32), acc2);
    acc3 = _mm512_fmadd_ps(load_h(i + 48), _mm512_loadu_ps(b + i + 48), acc3);
  }
  for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load_h(i), _mm512_loadu_ps(b + i), acc0);
  if (i < n) {
    const __mmask16 m = tail_mask16(n - i);
    const __m512 ha = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + i));
    acc1 = _mm512_fmadd_ps(ha, _mm512_maskz_loadu_ps(m, b + i), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_add_ps(acc2, acc3)));
}

}  // namespace

float dot_f32(const float* a, const float* b, std::size_t n) { return dot_f32_impl<false>(a, b, n); }
float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n) { return dot_f16_f32_impl<false>(a, b, n); }
float dot_f32_streaming(const float* a, const float* b, std::size_t n) { return dot_f32_impl<true>(a, b, n); }
float dot_f16_f32_streaming(const fp16_t* a, const float* b, std::size_t n) { return dot_f16_f32_impl<true>(a, b, n); }

// A named namespace, not an unnamed one: each instantiation then gets a section of its own,
// placed after the file's other functions; internal ones would go to the front of .text,
// which moves the alignment of the hot loops.
namespace pairs {

// What the Q8_0 and Q4_0 dot products differ in: how a pair of blocks (b, b+1) at p gives
// its weight bytes, unsigned for dpbusd's unsigned x signed products (wq), and its scales
// (dw); how a last, unpaired block gives its bytes; and the bias the bytes carry, taken off
// by starting each of a block's 8 lanes at -(sum(x) << kSumShift).
struct Q8_0Pairs {
  // q + 128 (an xor): the lanes start from -16 * sum(x), subtracting 128 * sum(x) in all.
  using Block = BlockQ8_0;
  static constexpr int kSumShift = 4;
  const __m512i d_idx = load_idx(kQ8PairD);
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));
  void load(const std::uint8_t* p, __m512i& wq, __m512& dw) const {
    const __m512i head = _mm512_loadu_si512(p);  // d0, qs0, d1, part of qs1
    const __m256i qs0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2));
    const __m256i qs1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 36));
    wq = _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(qs0), qs1, 1), bias);
    dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_idx, head)));
  }
  __m256i tail(const Block& w) const {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs)), _mm512_castsi512_si256(bias));
  }
};

struct Q4_0Pairs {
  // q in 0..15 (value q - 8) is unsigned already: the lanes start from -sum(x), 8 * sum(x) in all.
  using Block = BlockQ4_0;
  static constexpr int kSumShift = 0;
  static constexpr __mmask64 kPairBytes = (1ull << (2 * sizeof(BlockQ4_0))) - 1;  // never read past the pair
  const __m512i d_idx = load_idx(kQ4PairD);
  const __m512i qs_idx = load_idx(kQ4PairQs);
  const __m512i shift = load_idx(kQ4PairShift);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  void load(const std::uint8_t* p, __m512i& wq, __m512& dw) const {
    const __m512i raw = _mm512_maskz_loadu_epi8(kPairBytes, p);
    wq = _mm512_and_si512(_mm512_srlv_epi64(_mm512_permutexvar_epi8(qs_idx, raw), shift), low4);
    dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_idx, raw)));
  }
  __m256i tail(const Block& w) const {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.qs));
    const __m128i m = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
  }
};

template <int kShift>
inline __m512i shift_left(__m512i v) {
  if constexpr (kShift == 0) return v;
  else return _mm512_slli_epi32(v, kShift);
}

// A row of Q8_0 / Q4_0 blocks x Q8 activations, a pair of blocks per dpbusd, two pairs
// in flight. kSpread: the activations' per-pair scales and sums are spread already (Q8Act's
// d16 / neg_sum16).
template <class Pairs, bool kSpread>
float dot_pairs_q8(const typename Pairs::Block* w, const Q8Act& x, std::size_t n_blocks) {
  const Pairs pairs;
  const __m512i pair_idx = load_idx(kPairIdx);
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  const auto* base = reinterpret_cast<const std::uint8_t*>(w);
  auto pair = [&](std::size_t b, __m512& acc) {
    __m512i wq;
    __m512 dw;
    pairs.load(base + b * sizeof(typename Pairs::Block), wq, dw);
    constexpr int kShift = Pairs::kSumShift;
    const __m512i init =
        kSpread ? shift_left<kShift>(_mm512_load_si512(x.neg_sum16 + 8 * b))
                : _mm512_sub_epi32(_mm512_setzero_si512(), shift_left<kShift>(pair_i32(x.sum + b, pair_idx)));
    const __m512 dx = kSpread ? _mm512_load_ps(x.d16 + 8 * b) : pair_f32(x.d + b, pair_idx);
    const __m512i dot = _mm512_dpbusd_epi32(init, wq, _mm512_loadu_si512(x.qs + b * kQK));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, dx), acc);
  };
  std::size_t b = 0;
  for (; b + 4 <= n_blocks; b += 4) {
    pair(b, acc0);
    pair(b + 2, acc1);
  }
  if (b + 2 <= n_blocks) {
    pair(b, acc0);
    b += 2;
  }
  float tail = 0.0f;
  if (b < n_blocks) {
    const __m256i dot = _mm256_dpbusd_epi32(_mm256_set1_epi32(-(1 << Pairs::kSumShift) * x.sum[b]), pairs.tail(w[b]),
                                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + b * kQK)));
    tail = simd::hsum(_mm256_cvtepi32_ps(dot)) * (fp16_to_fp32(w[b].d) * x.d[b]);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + tail;
}

}  // namespace pairs

float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks) {
  return x.d16 != nullptr ? pairs::dot_pairs_q8<pairs::Q8_0Pairs, true>(w, x, n_blocks)
                          : pairs::dot_pairs_q8<pairs::Q8_0Pairs, false>(w, x, n_blocks);
}

float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks) {
  return x.d16 != nullptr ? pairs::dot_pairs_q8<pairs::Q4_0Pairs, true>(w, x, n_blocks)
                          : pairs::dot_pairs_q8<pairs::Q4_0Pairs, false>(w, x, n_blocks);
}

#elif defined(PWPI_OPS_AVX2)

float dot_f32(const float* a, const float* b, std::size_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = simd::hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n) {
  auto load_h = [&](std::size_t i) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i))); };
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    acc0 = _mm256_fmadd_ps(load_h(i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(load_h(i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    acc2 = _mm256_fmadd_ps(load_h(i + 16), _mm256_loadu_ps(b + i + 16), acc2);
    acc3 = _mm256_fmadd_ps(load_h(i + 24), _mm256_loadu_ps(b + i + 24), acc3);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load_h(i), _mm256_loadu_ps(b + i), acc0);
  float s = simd::hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
  for (; i < n; ++i) s += fp16_to_fp32(a[i]) * b[i];
  return s;
}

namespace {

// Sum of unsigned x signed byte products over groups of 4 bytes into 8 int32 lanes
// (pairs of products must stay within int16: |u| * |s| * 2 <= 32767).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

}  // namespace

// Q8_0 x Q8 (AVX2): the sign trick, |w| times x with w's sign (maddubs needs one unsigned
// operand; |w| <= 128 and |x| <= 127 keep pair sums within int16).
float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  auto block = [&](std::size_t b, __m256& acc) {
    const __m256i wq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].qs));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + b * kQK));
    const __m256i dot = dot_u8s8(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(xq, wq));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(fp16_to_fp32(w[b].d) * x.d[b]), acc);
  };
  std::size_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    block(b, acc0);
    block(b + 1, acc1);
  }
  if (b < n_blocks) block(b, acc0);
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  const __m128i m = _mm_set1_epi8(0x0f);
  auto block = [&](std::size_t b, __m256& acc) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[b].qs));
    const __m256i wq = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m), _mm_and_si128(q, m));
    const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs + b * kQK));
    const __m256i dot = _mm256_add_epi32(dot_u8s8(wq, xq), _mm256_set1_epi32(-x.sum[b]));
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_set1_ps(fp16_to_fp32(w[b].d) * x.d[b]), acc);
  };
  std::size_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    block(b, acc0);
    block(b + 1, acc1);
  }
  if (b < n_blocks) block(b, acc0);
  return simd::hsum(_mm256_add_ps(acc0, acc1));
}

#else

float dot_f32(const float* a, const float* b, std::size_t n) {
  float s[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t k = 0; k < 8; ++k) s[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

float dot_f16_f32(const fp16_t* a, const float* b, std::size_t n) {
  float s[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (std::size_t k = 0; k < 8; ++k) s[k] += fp16_to_fp32(a[i + k]) * b[i + k];
  for (; i < n; ++i) s[0] += fp16_to_fp32(a[i]) * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

float dot_q8_0_q8(const BlockQ8_0* w, const Q8Act& x, std::size_t n_blocks) {
  float s = 0.0f;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    std::int32_t sumi = 0;
    for (std::size_t j = 0; j < kQK; ++j) sumi += w[b].qs[j] * x.qs[b * kQK + j];
    s += static_cast<float>(sumi) * (fp16_to_fp32(w[b].d) * x.d[b]);
  }
  return s;
}

float dot_q4_0_q8(const BlockQ4_0* w, const Q8Act& x, std::size_t n_blocks) {
  float s = 0.0f;
  for (std::size_t b = 0; b < n_blocks; ++b) {
    std::int32_t sumi = 0;
    for (std::size_t j = 0; j < kQK / 2; ++j) {
      sumi += (w[b].qs[j] & 15) * x.qs[b * kQK + j] + (w[b].qs[j] >> 4) * x.qs[b * kQK + j + kQK / 2];
    }
    sumi -= 8 * x.sum[b];
    s += static_cast<float>(sumi) * (fp16_to_fp32(w[b].d) * x.d[b]);
  }
  return s;
}

#endif

#if !defined(PWPI_OPS_AVX512)
// These builds prefetch in matvec itself (ops/matmul.cpp).
float dot_f32_streaming(const float* a, const float* b, std::size_t n) { return dot_f32(a, b, n); }
float dot_f16_f32_streaming(const fp16_t* a, const float* b, std::size_t n) { return dot_f16_f32(a, b, n); }
#endif

}  // namespace powerinfer2::ops
