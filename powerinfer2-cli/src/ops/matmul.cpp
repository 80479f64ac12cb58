#include "ops/matmul.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <utility>
#include <vector>

#include "common/errors.hpp"
#include "ops/dot.hpp"
#include "ops/packed.hpp"
#include "ops/quants.hpp"
#include "ops/simd.hpp"

namespace powerinfer2::ops {

using io::GgmlType;

namespace {

// Chunks of rows handed to the threads by matvec: about 8 per thread, so that a thread
// slowed down by something else does not hold up the product.
std::size_t matvec_grain(std::size_t n_rows, std::size_t n_threads) {
  const std::size_t per = (n_rows + 8 * n_threads - 1) / (8 * n_threads);
  return std::max<std::size_t>(16, (per + 3) / 4 * 4);
}

// Calls body(chunk, thread_index) for every chunk in [0, n_chunks), chunks claimed
// dynamically by the pool's threads. Nothing is allocated.
template <class Body>
void for_chunks(common::ThreadPool& pool, std::size_t n_chunks, Body&& body) {
  if (n_chunks == 0) return;
  if (n_chunks == 1 || pool.runs_inline_here()) {
    for (std::size_t c = 0; c < n_chunks; ++c) body(c, std::size_t{0});
    return;
  }
  struct Region {
    std::atomic<std::size_t> next{0};
    std::size_t n_chunks;
    std::remove_reference_t<Body>* body;
  } region{{}, n_chunks, &body};
  Region* r = &region;
  pool.run_on_all([r](std::size_t thread_index) {
    for (std::size_t c; (c = r->next.fetch_add(1, std::memory_order_relaxed)) < r->n_chunks;) (*r->body)(c, thread_index);
  });
}

// Calls body(begin, end) over [0, n) in chunks of `grain`.
template <class Body>
void for_ranges(common::ThreadPool& pool, std::size_t n, std::size_t grain, Body&& body) {
  for_chunks(pool, (n + grain - 1) / grain, [&](std::size_t c, std::size_t) { body(c * grain, std::min(n, (c + 1) * grain)); });
}

#if defined(PWPI_OPS_AVX512)
// The AVX-512 matmul of GGUF-layout weights repacks a chunk of rows at a time into the
// thread's scratch: Q8_0 / Q4_0 to rows16 (ops/packed.hpp), 64 rows per task.
constexpr std::size_t kQChunkRows = 64;
constexpr std::size_t kQTokenTile = 12;  // tokens per micro-kernel call
// F32 / F16: a panel of 64 rows, k-major ([kc][64] floats), for kc inputs at a time.
constexpr std::size_t kFChunkRows = 64;
constexpr std::size_t kFKc = 512;
constexpr std::size_t kFTokenTile = 6;
// Below this many tokens, packing does not pay: row-by-token dot products instead.
constexpr std::size_t kGemmMinTokens = 4;
#endif
// Up to this many tokens, the quantized activations also get Q8Act's spread form, which
// the AVX-512 dot products read (the other builds' kernels do not use it).
#if defined(PWPI_OPS_AVX512)
constexpr std::size_t kDotMaxTokens = kGemmMinTokens - 1;
#else
constexpr std::size_t kDotMaxTokens = 0;
#endif

// How far ahead matvec prefetches the weights (into L1) while it computes a row: one core
// alone does not keep enough cache-line reads in flight otherwise (measured: Q4_0 matvec
// from memory on one thread 5.3 -> 7.7 GB/s, F16 8.0 -> 10 GB/s).
constexpr std::size_t kPrefetchBytes = 8192;
#if defined(PWPI_OPS_AVX512)
// The rows16 matvec prefetches every line of the weights this far ahead, into L2. Against
// 8 KiB into L1 that skipped the scales' line of each pair: the engine's 1b decode Q4_0 +7%,
// Q8_0 the same within noise (alternating runs); 3 and 6 KiB no better than 4.
constexpr std::size_t kRows16Ahead = 4096;
#endif

std::size_t scratch_bytes_per_thread(std::size_t max_cols) {
#if defined(PWPI_OPS_AVX512)
  const std::size_t q = rows16_bytes(GgmlType::Q8_0, kQChunkRows, (max_cols + kQK - 1) / kQK * kQK);
  const std::size_t f = kFChunkRows * kFKc * sizeof(float);
  return (std::max(q, f) + 63) / 64 * 64;
#else
  (void)max_cols;
  return 0;
#endif
}

}  // namespace

// The workspace's buffers, for the kernels of this file.
struct WorkspaceAccess {
  // Quantizes n_tok rows of x into the workspace; Q8Act of token 0 (token t at t * nb blocks),
  // with the spread form when n_tok <= kDotMaxTokens (token t's at t * spread_stride()).
  static Q8Act quantize(Workspace& ws, const float* x, std::size_t n_tok, std::size_t n_cols, common::ThreadPool* pool) {
    const std::size_t nb = n_cols / kQK;
    PWPI_CHECK_MSG(n_tok <= ws.max_tokens_ && n_cols <= ws.max_cols_,
                   "workspace sized for " + std::to_string(ws.max_tokens_) + " x " + std::to_string(ws.max_cols_) +
                       ", product needs " + std::to_string(n_tok) + " x " + std::to_string(n_cols));
    std::int8_t* qs = ws.act_qs_.data();
    float* d = ws.act_d_.data();
    std::int32_t* sum = ws.act_sum_.data();
    auto rows = [&](std::size_t t0, std::size_t t1) {
      for (std::size_t t = t0; t < t1; ++t)
        quantize_act_q8(x + t * n_cols, n_cols, qs + t * nb * kQK, d + t * nb, sum + t * nb);
    };
    if (pool != nullptr && n_tok > 1)
      for_ranges(*pool, n_tok, std::max<std::size_t>(1, n_tok / (4 * pool->size())), rows);
    else
      rows(0, n_tok);
    Q8Act a{qs, d, sum};
    if (n_tok <= kDotMaxTokens) {
      for (std::size_t t = 0; t < n_tok; ++t)
        spread_act_pairs(Q8Act{qs, d + t * nb, sum + t * nb}, nb, ws.act_d16_.data() + t * spread_stride(ws),
                         ws.act_neg_sum16_.data() + t * spread_stride(ws));
      a.d16 = ws.act_d16_.data();
      a.neg_sum16 = ws.act_neg_sum16_.data();
    }
    return a;
  }
  // Values per token in the spread arrays.
  static std::size_t spread_stride(const Workspace& ws) { return (ws.max_cols_ / kQK / 2) * 16; }
  static std::int32_t* sums(Workspace& ws) { return ws.act_sum_.data(); }
  static std::uint8_t* scratch(Workspace& ws, std::size_t thread_index) {
    PWPI_CHECK(thread_index < ws.max_threads_);
    return ws.scratch_.data() + thread_index * ws.scratch_stride_;
  }
  static void check_threads(const Workspace& ws, const common::ThreadPool& pool) {
    PWPI_CHECK_MSG(pool.size() <= ws.max_threads_, "workspace sized for " + std::to_string(ws.max_threads_) +
                                                      " threads, pool has " + std::to_string(pool.size()));
  }
};

Workspace::Workspace(std::size_t max_tokens, std::size_t max_cols, std::size_t max_threads)
    : max_tokens_(max_tokens), max_cols_(max_cols), max_threads_(std::max<std::size_t>(1, max_threads)) {
  const std::size_t nb = (max_cols + kQK - 1) / kQK;
  act_qs_ = common::AlignedBuffer<std::int8_t>(max_tokens * nb * kQK);
  act_d_ = common::AlignedBuffer<float>(max_tokens * nb);
  act_sum_ = common::AlignedBuffer<std::int32_t>(max_tokens * nb);
  const std::size_t spread = std::min(max_tokens, kDotMaxTokens) * (max_cols / kQK / 2) * 16;
  act_d16_ = common::AlignedBuffer<float>(spread);
  act_neg_sum16_ = common::AlignedBuffer<std::int32_t>(spread);
  scratch_stride_ = scratch_bytes_per_thread(max_cols);
  scratch_ = common::AlignedBuffer<std::uint8_t>(max_threads_ * scratch_stride_);
}

std::size_t Workspace::size_bytes() const {
  return act_qs_.size_bytes() + act_d_.size_bytes() + act_sum_.size_bytes() + act_d16_.size_bytes() +
         act_neg_sum16_.size_bytes() + scratch_.size_bytes();
}

std::size_t WeightMatrix::row_bytes() const {
  switch (type) {
    case GgmlType::F32: return n_cols * sizeof(float);
    case GgmlType::F16: return n_cols * sizeof(fp16_t);
    case GgmlType::Q8_0: return n_cols / kQK * sizeof(BlockQ8_0);
    case GgmlType::Q4_0: return n_cols / kQK * sizeof(BlockQ4_0);
    default: break;
  }
  PWPI_CHECK_MSG(false, "weight type " + std::string(io::ggml_type_name(type)) + " has no kernels");
  return 0;
}

bool is_supported_weight_type(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::Q8_0 || type == GgmlType::Q4_0;
}

namespace {

void check_matrix(const WeightMatrix& w) {
  PWPI_CHECK_MSG(is_supported_weight_type(w.type), "weight type " + std::string(io::ggml_type_name(w.type)) + " has no kernels");
  PWPI_CHECK(w.data != nullptr || w.n_rows == 0 || w.n_cols == 0);
  if (w.type == GgmlType::Q8_0 || w.type == GgmlType::Q4_0) PWPI_CHECK(w.n_cols % kQK == 0);
  if (w.layout == WeightLayout::rows16) {
    PWPI_CHECK(w.type == GgmlType::Q8_0 || w.type == GgmlType::Q4_0);
    PWPI_CHECK_MSG(reinterpret_cast<std::uintptr_t>(w.data) % 64 == 0, "rows16 weights must be 64-byte aligned");
  }
}

const std::uint8_t* row_ptr(const WeightMatrix& w, std::size_t r) {
  return static_cast<const std::uint8_t*>(w.data) + r * w.row_bytes();
}

// One output: row r of W with one activation row (x for F32/F16, a for the quantized).
inline float row_dot(const WeightMatrix& w, std::size_t r, const float* x, const Q8Act& a) {
  const std::uint8_t* p = row_ptr(w, r);
  switch (w.type) {
    case GgmlType::F32: return dot_f32(reinterpret_cast<const float*>(p), x, w.n_cols);
    case GgmlType::F16: return dot_f16_f32(reinterpret_cast<const fp16_t*>(p), x, w.n_cols);
    case GgmlType::Q8_0: return dot_q8_0_q8(reinterpret_cast<const BlockQ8_0*>(p), a, w.n_cols / kQK);
    case GgmlType::Q4_0: return dot_q4_0_q8(reinterpret_cast<const BlockQ4_0*>(p), a, w.n_cols / kQK);
    default: return 0.0f;
  }
}

Q8Act token_act(const Q8Act& a, std::size_t t, std::size_t nb, std::size_t spread_stride) {
  Q8Act r{a.qs + t * nb * kQK, a.d + t * nb, a.sum + t * nb};
  if (a.d16 != nullptr) {
    r.d16 = a.d16 + t * spread_stride;
    r.neg_sum16 = a.neg_sum16 + t * spread_stride;
  }
  return r;
}

bool is_quantized(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

// Row-by-token dot products over rows [r0, r1): every token runs over the rows while they
// are in cache.
void dots_chunk(const WeightMatrix& w, const float* x, const Q8Act& a, std::size_t n_tok, float* y, std::size_t r0,
                std::size_t r1, std::size_t spread_stride) {
  const std::size_t nb = w.n_cols / kQK;
  for (std::size_t t = 0; t < n_tok; ++t) {
    const Q8Act at = is_quantized(w.type) ? token_act(a, t, nb, spread_stride) : Q8Act{};
    for (std::size_t r = r0; r < r1; ++r) y[t * w.n_rows + r] = row_dot(w, r, x + t * w.n_cols, at);
  }
}

// One token over rows [r0, r1), prefetching kPrefetchBytes ahead within the chunk (the
// AVX-512 F32 / F16 dot products prefetch as they go instead: dot.hpp's _streaming ones).
void matvec_chunk(const WeightMatrix& w, const float* x, const Q8Act& a, float* y, std::size_t r0, std::size_t r1) {
#if defined(PWPI_OPS_AVX512)
  if (w.type == GgmlType::F16 || w.type == GgmlType::F32) {
    for (std::size_t r = r0; r < r1; ++r) {
      const std::uint8_t* p = row_ptr(w, r);
      y[r] = w.type == GgmlType::F16 ? dot_f16_f32_streaming(reinterpret_cast<const fp16_t*>(p), x, w.n_cols)
                                     : dot_f32_streaming(reinterpret_cast<const float*>(p), x, w.n_cols);
    }
    return;
  }
#endif
  const std::size_t row_bytes = w.row_bytes();
  const std::uint8_t* end = row_ptr(w, r1);
  for (std::size_t r = r0; r < r1; ++r) {
    const std::uint8_t* p = row_ptr(w, r) + kPrefetchBytes;
    for (const std::uint8_t* q = std::min(p + row_bytes, end); p < q; p += 64) __builtin_prefetch(p, 0, 3);
    y[r] = row_dot(w, r, x, a);
  }
}

#if defined(PWPI_OPS_AVX512)

template <std::size_t N, class F>
[[gnu::always_inline]] inline void unroll(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) { (f(std::integral_constant<std::size_t, I>{}), ...); }(
      std::make_index_sequence<N>{});
}

inline __mmask16 row_mask(std::size_t n_valid) {
  return n_valid >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << n_valid) - 1u);
}

// --- Q8_0 / Q4_0 in the rows16 layout (ops/packed.hpp) x Q8 activations -------------------

// y[t][0..16) = the group's 16 rows . token t, for RN tokens: per block, the 8 vectors of
// 4 elements x 16 rows (Q4_0's unpacked from 4 loads) meet each token's 4 activation bytes
// broadcast in 8 vpdpbusd, one lane per row. The weight bytes are biased unsigned (Q4_0's
// q in 0..15, Q8_0's q + 128); xinit[t][b] = -bias * (the sum of the token's block b)
// starts each row's sum, so the lanes end with the exact integer dot products.
template <bool kQ4, std::size_t RN>
void rows16_kernel(const std::uint8_t* group, std::size_t nb, const std::int8_t* xq, const float* xd,
                   const std::int32_t* xinit, float* y, std::size_t y_stride, __mmask16 mask) {
  constexpr std::size_t kVecs = kQ4 ? 4 : 8;
  constexpr std::size_t kPairBytes = rows16_pair_bytes(kQ4 ? GgmlType::Q4_0 : GgmlType::Q8_0);
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512 acc[RN];
  unroll<RN>([&](auto t) { acc[t] = _mm512_setzero_ps(); });
  for (std::size_t b = 0; b < nb; ++b) {
    const std::uint8_t* pair = group + (b / 2) * kPairBytes;
    const std::uint8_t* vec = pair + (b % 2) * kVecs * 64;
    if constexpr (RN == 1) {  // matvec: the weights stream from memory once
      // Every line of the pair kRows16Ahead bytes ahead, its scales' line too, about half
      // of them at each of its two blocks.
      constexpr std::size_t kPairLines = kPairBytes / 64, kFirstLines = (kPairLines + 1) / 2;
      const std::size_t l0 = b % 2 == 0 ? 0 : kFirstLines, l1 = b % 2 == 0 ? kFirstLines : kPairLines;
      const char* ahead = reinterpret_cast<const char*>(pair) + kRows16Ahead;
      for (std::size_t l = l0; l < l1; ++l) _mm_prefetch(ahead + 64 * l, _MM_HINT_T1);
    }
    __m512i g[8];
    if constexpr (kQ4) {
      unroll<4>([&](auto k) {
        const __m512i v = _mm512_load_si512(vec + 64 * k);
        g[k] = _mm512_and_si512(v, low4);                           // elements 4k..4k+3
        g[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);  // elements 16+4k..
      });
    } else {
      unroll<8>([&](auto k) { g[k] = _mm512_load_si512(vec + 64 * k); });
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(pair + 2 * kVecs * 64 + (b % 2) * 32)));
    unroll<RN>([&](auto t) {
      const std::int8_t* q = xq + (t * nb + b) * kQK;
      __m512i s = _mm512_set1_epi32(xinit[t * nb + b]);
      unroll<8>([&](auto k) {
        std::int32_t v;
        std::memcpy(&v, q + 4 * k, 4);
        s = _mm512_dpbusd_epi32(s, g[k], _mm512_set1_epi32(v));
      });
      acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t * nb + b])), acc[t]);
    });
  }
  unroll<RN>([&](auto t) { _mm512_mask_storeu_ps(y + t * y_stride, mask, acc[t]); });
}

using Rows16Kernel = void (*)(const std::uint8_t*, std::size_t, const std::int8_t*, const float*, const std::int32_t*,
                              float*, std::size_t, __mmask16);
template <bool kQ4, std::size_t... I>
constexpr std::array<Rows16Kernel, sizeof...(I)> rows16_kernels(std::index_sequence<I...>) {
  return {&rows16_kernel<kQ4, I + 1>...};
}
constexpr auto kRows16Q4 = rows16_kernels<true>(std::make_index_sequence<kQTokenTile>{});
constexpr auto kRows16Q8 = rows16_kernels<false>(std::make_index_sequence<kQTokenTile>{});

// Groups [g0, g1) of a rows16 matrix (`groups` at group 0) for all n_tok tokens.
void rows16_groups(GgmlType type, const std::uint8_t* groups, std::size_t n_rows, std::size_t nb, std::size_t g0,
                   std::size_t g1, const Q8Act& a, const std::int32_t* init, std::size_t n_tok, float* y,
                   std::size_t y_stride) {
  const std::size_t group_bytes = (nb + 1) / 2 * rows16_pair_bytes(type);
  const auto& kernels = type == GgmlType::Q4_0 ? kRows16Q4 : kRows16Q8;
  for (std::size_t t0 = 0; t0 < n_tok; t0 += kQTokenTile) {
    const std::size_t nt = std::min(kQTokenTile, n_tok - t0);
    for (std::size_t g = g0; g < g1; ++g) {
      kernels[nt - 1](groups + g * group_bytes, nb, a.qs + t0 * nb * kQK, a.d + t0 * nb, init + t0 * nb,
                      y + t0 * y_stride + g * kRows16, y_stride, row_mask(n_rows - g * kRows16));
    }
  }
}

#else  // not PWPI_OPS_AVX512: rows16 in scalar code

void rows16_groups(GgmlType type, const std::uint8_t* groups, std::size_t n_rows, std::size_t nb, std::size_t g0,
                   std::size_t g1, const Q8Act& a, const std::int32_t* init, std::size_t n_tok, float* y,
                   std::size_t y_stride) {
  const bool q4 = type == GgmlType::Q4_0;
  const std::size_t n_vec = q4 ? 4 : 8, pair_bytes = rows16_pair_bytes(type);
  const std::size_t group_bytes = (nb + 1) / 2 * pair_bytes;
  for (std::size_t g = g0; g < g1; ++g) {
    for (std::size_t l = 0; l < kRows16 && g * kRows16 + l < n_rows; ++l) {
      for (std::size_t t = 0; t < n_tok; ++t) {
        float acc = 0.0f;
        for (std::size_t b = 0; b < nb; ++b) {
          const std::uint8_t* pair = groups + g * group_bytes + (b / 2) * pair_bytes;
          const std::uint8_t* vec = pair + (b % 2) * n_vec * 64;
          fp16_t d;
          std::memcpy(&d, pair + 2 * n_vec * 64 + (b % 2) * 32 + 2 * l, 2);
          const std::int8_t* q = a.qs + (t * nb + b) * kQK;
          std::int32_t s = init[t * nb + b];
          for (std::size_t e = 0; e < kQK; ++e) {  // element e: vector e / 4 (Q4_0: (e % 16) / 4, nibble e / 16)
            const std::size_t k = q4 ? (e % 16) / 4 : e / 4;
            const std::uint8_t byte = vec[64 * k + 4 * l + e % 4];
            const int u = q4 ? (e < 16 ? byte & 15 : byte >> 4) : byte;
            s += u * q[e];
          }
          acc += static_cast<float>(s) * (fp16_to_fp32(d) * a.d[t * nb + b]);
        }
        y[t * y_stride + g * kRows16 + l] = acc;
      }
    }
  }
}

#endif  // PWPI_OPS_AVX512

// Replaces the workspace's block sums by -bias * sum, the start of each row's integer sum
// for biased weight bytes (rows16_kernel).
const std::int32_t* bias_init(GgmlType type, const Q8Act& a, std::size_t n_tok, std::size_t nb, Workspace& ws) {
  const std::int32_t bias = type == GgmlType::Q4_0 ? 8 : 128;
  std::int32_t* init = WorkspaceAccess::sums(ws);
  for (std::size_t i = 0; i < n_tok * nb; ++i) init[i] = -bias * a.sum[i];
  return init;
}

#if defined(PWPI_OPS_AVX512)
// GGUF-layout Q8_0 / Q4_0 rows [r0, r0 + 64) times n_tok >= kGemmMinTokens tokens: repacked
// to rows16 in the thread's scratch, then run as a rows16 matrix.
void q_packed_chunk(const WeightMatrix& w, const Q8Act& a, const std::int32_t* init, std::size_t n_tok, float* y,
                    std::size_t r0, std::uint8_t* scratch) {
  const std::size_t nb = w.n_cols / kQK;
  const std::size_t rows = std::min(kQChunkRows, w.n_rows - r0);
  const WeightMatrix chunk{w.type, row_ptr(w, r0), rows, w.n_cols};
  pack_rows16(chunk, scratch);
  rows16_groups(w.type, scratch, rows, nb, 0, (rows + kRows16 - 1) / kRows16, a, init, n_tok, y + r0, w.n_rows);
}

// --- F32 / F16 weights: packed 64-row panels x F32 activations ------------------------------

// Packs inputs [k0, k0 + kc) of rows [r0, r0 + n_valid) as panel[k][64] (F16 widened to
// F32), 16 x 16 tiles at a time; missing rows are zero.
void pack_f_panel(const WeightMatrix& w, std::size_t r0, std::size_t n_valid, std::size_t k0, std::size_t kc,
                  float* panel) {
  for (std::size_t g = 0; g < kFChunkRows / 16; ++g) {
    for (std::size_t kb = 0; kb < kc; kb += 16) {
      const std::size_t nk = std::min<std::size_t>(16, kc - kb);
      const __mmask16 m = row_mask(nk);
      __m512 r[16];
      for (std::size_t i = 0; i < 16; ++i) {
        const std::size_t row = 16 * g + i;
        if (row >= n_valid) {
          r[i] = _mm512_setzero_ps();
        } else if (w.type == GgmlType::F32) {
          r[i] = _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row_ptr(w, r0 + row)) + k0 + kb);
        } else {
          const auto* h = reinterpret_cast<const fp16_t*>(row_ptr(w, r0 + row)) + k0 + kb;
          r[i] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, h));
        }
      }
      simd::transpose16(r);
      for (std::size_t k = 0; k < nk; ++k) _mm512_store_ps(panel + (kb + k) * kFChunkRows + 16 * g, r[k]);
    }
  }
}

// y[t][0..64) (+)= panel . x[t][0..kc) for RN tokens.
template <std::size_t RN>
void f_kernel(const float* panel, std::size_t kc, const float* x, std::size_t x_stride, float* y,
              std::size_t y_stride, bool accumulate, std::size_t n_valid) {
  __m512 acc[RN][4];
  unroll<RN>([&](auto t) { unroll<4>([&](auto v) { acc[t][v] = _mm512_setzero_ps(); }); });
  for (std::size_t k = 0; k < kc; ++k) {
    const float* pk = panel + k * kFChunkRows;
    const __m512 w0 = _mm512_load_ps(pk), w1 = _mm512_load_ps(pk + 16), w2 = _mm512_load_ps(pk + 32),
                 w3 = _mm512_load_ps(pk + 48);
    unroll<RN>([&](auto t) {
      const __m512 xb = _mm512_set1_ps(x[t * x_stride + k]);
      acc[t][0] = _mm512_fmadd_ps(w0, xb, acc[t][0]);
      acc[t][1] = _mm512_fmadd_ps(w1, xb, acc[t][1]);
      acc[t][2] = _mm512_fmadd_ps(w2, xb, acc[t][2]);
      acc[t][3] = _mm512_fmadd_ps(w3, xb, acc[t][3]);
    });
  }
  unroll<4>([&](auto v) {
    const std::size_t first = 16 * v;
    if (first >= n_valid) return;
    const __mmask16 m = row_mask(n_valid - first);
    unroll<RN>([&](auto t) {
      float* p = y + t * y_stride + first;
      __m512 r = acc[t][v];
      if (accumulate) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, p));
      _mm512_mask_storeu_ps(p, m, r);
    });
  });
}

using FKernel = void (*)(const float*, std::size_t, const float*, std::size_t, float*, std::size_t, bool, std::size_t);
template <std::size_t... I>
constexpr std::array<FKernel, sizeof...(I)> f_kernels(std::index_sequence<I...>) {
  return {&f_kernel<I + 1>...};
}
constexpr auto kFKernels = f_kernels(std::make_index_sequence<kFTokenTile>{});

// F32 / F16 rows [r0, r0 + 64) times n_tok tokens, kFKc inputs at a time through a panel.
void f_packed_chunk(const WeightMatrix& w, const float* x, std::size_t n_tok, float* y, std::size_t r0, float* panel) {
  const std::size_t rows = std::min(kFChunkRows, w.n_rows - r0);
  for (std::size_t k0 = 0; k0 < w.n_cols; k0 += kFKc) {
    const std::size_t kc = std::min(kFKc, w.n_cols - k0);
    pack_f_panel(w, r0, rows, k0, kc, panel);
    for (std::size_t t0 = 0; t0 < n_tok; t0 += kFTokenTile) {
      const std::size_t nt = std::min(kFTokenTile, n_tok - t0);
      kFKernels[nt - 1](panel, kc, x + t0 * w.n_cols + k0, w.n_cols, y + t0 * w.n_rows + r0, w.n_rows, k0 > 0, rows);
    }
  }
}

#endif  // PWPI_OPS_AVX512

void check_sizes(const WeightMatrix& w, std::size_t x_size, std::size_t n_tok, std::size_t y_size) {
  check_matrix(w);
  PWPI_CHECK_MSG(x_size == n_tok * w.n_cols, "input has " + std::to_string(x_size) + " values, expected " +
                                                 std::to_string(n_tok) + " x " + std::to_string(w.n_cols));
  PWPI_CHECK_MSG(y_size == n_tok * w.n_rows, "output has " + std::to_string(y_size) + " values, expected " +
                                                 std::to_string(n_tok) + " x " + std::to_string(w.n_rows));
}

}  // namespace

namespace {

// How one product is computed, chosen by layout, type and token count.
enum class Path : std::uint8_t {
  matvec_rows,  // one token, row dot products (GGUF layout)
  dots,         // a few tokens, row-by-token dot products
  rows16,       // rows16 layout, 1..kQTokenTile tokens per kernel call
  q_packed,     // Q8_0 / Q4_0 GGUF rows repacked to rows16 per chunk (AVX-512)
  f_packed,     // F32 / F16 rows packed into panels per chunk (AVX-512)
};

Path choose_path(const WeightMatrix& w, std::size_t n_tok) {
  if (w.layout == WeightLayout::rows16) return Path::rows16;
  if (n_tok == 1) return Path::matvec_rows;
#if defined(PWPI_OPS_AVX512)
  if (n_tok >= kGemmMinTokens) return is_quantized(w.type) ? Path::q_packed : Path::f_packed;
#endif
  return Path::dots;
}

// Rows per chunk handed to a thread.
std::size_t path_grain(Path path, const WeightMatrix& w, std::size_t n_tok, std::size_t n_threads) {
  switch (path) {
    case Path::matvec_rows: return matvec_grain(w.n_rows, n_threads);
    case Path::dots: return std::min<std::size_t>(matvec_grain(w.n_rows, n_threads), 32);
    case Path::rows16: {
      // matvec: about 8 chunks per thread; matmul: 4 groups, so a token tile's activations
      // are reused over 64 rows.
      const std::size_t n_groups = (w.n_rows + kRows16 - 1) / kRows16;
      return kRows16 * (n_tok == 1 ? std::max<std::size_t>(1, n_groups / (8 * n_threads)) : 4);
    }
#if defined(PWPI_OPS_AVX512)
    case Path::q_packed: return kQChunkRows;
    case Path::f_packed: return kFChunkRows;
#else
    default: break;
#endif
  }
  PWPI_CHECK_MSG(false, "no such product path in this build");
  return 1;
}

// One product of a region: its matrix, output, path and chunking.
struct Job {
  const WeightMatrix* w;
  float* y;
  Path path;
  std::size_t grain, n_chunks;
};

// What the jobs of a region share: the input (F32 and quantized), the rows16 sum starts.
struct Input {
  const float* x;
  Q8Act a;
  const std::int32_t* init;  // -bias * block sums (rows16 and q_packed paths)
  std::size_t n_tok;
  std::size_t spread_stride;
};

void run_chunk(const Job& j, const Input& in, std::size_t c, std::size_t thread_index, Workspace& ws) {
  const WeightMatrix& w = *j.w;
  const std::size_t r0 = c * j.grain, r1 = std::min(w.n_rows, r0 + j.grain);
  switch (j.path) {
    case Path::matvec_rows: return matvec_chunk(w, in.x, in.a, j.y, r0, r1);
    case Path::dots: return dots_chunk(w, in.x, in.a, in.n_tok, j.y, r0, r1, in.spread_stride);
    case Path::rows16:
      return rows16_groups(w.type, static_cast<const std::uint8_t*>(w.data), w.n_rows, w.n_cols / kQK, r0 / kRows16,
                           (r1 + kRows16 - 1) / kRows16, in.a, in.init, in.n_tok, j.y, w.n_rows);
#if defined(PWPI_OPS_AVX512)
    case Path::q_packed:
      return q_packed_chunk(w, in.a, in.init, in.n_tok, j.y, r0, WorkspaceAccess::scratch(ws, thread_index));
    case Path::f_packed:
      return f_packed_chunk(w, in.x, in.n_tok, j.y, r0,
                            reinterpret_cast<float*>(WorkspaceAccess::scratch(ws, thread_index)));
#endif
    default: break;
  }
  (void)thread_index;
  (void)ws;
}

constexpr std::size_t kMaxJobs = 8;

// The products of `ps` (same type and n_cols) over one input, in one parallel region.
void run_products(std::span<const Product> ps, std::span<const float> x, std::size_t n_tok, common::ThreadPool& pool,
                  Workspace& ws) {
  PWPI_CHECK(!ps.empty() && ps.size() <= kMaxJobs);
  const WeightMatrix& w0 = *ps[0].w;
  std::array<Job, kMaxJobs> jobs{};
  std::size_t n_chunks = 0;
  bool uses_init = false;
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const WeightMatrix& w = *ps[i].w;
    check_sizes(w, x.size(), n_tok, ps[i].y.size());
    PWPI_CHECK_MSG(w.type == w0.type && w.n_cols == w0.n_cols, "products of one region share type and input width");
    const Path path = choose_path(w, n_tok);
    const std::size_t grain = path_grain(path, w, n_tok, pool.size());
    jobs[i] = Job{&w, ps[i].y.data(), path, grain, (w.n_rows + grain - 1) / grain};
    n_chunks += jobs[i].n_chunks;
    uses_init = uses_init || path == Path::rows16 || path == Path::q_packed;
  }
  if (n_chunks == 0) return;
  WorkspaceAccess::check_threads(ws, pool);
  Input in{x.data(), Q8Act{}, nullptr, n_tok, WorkspaceAccess::spread_stride(ws)};
  if (is_quantized(w0.type)) in.a = WorkspaceAccess::quantize(ws, x.data(), n_tok, w0.n_cols, n_tok > 1 ? &pool : nullptr);
  if (uses_init) in.init = bias_init(w0.type, in.a, n_tok, w0.n_cols / kQK, ws);
  const std::size_t n_jobs = ps.size();
  for_chunks(pool, n_chunks, [&](std::size_t c, std::size_t thread_index) {
    std::size_t i = 0;
    while (c >= jobs[i].n_chunks && i + 1 < n_jobs) c -= jobs[i++].n_chunks;
    run_chunk(jobs[i], in, c, thread_index, ws);
  });
}

}  // namespace

void matvec(const WeightMatrix& w, std::span<const float> x, std::span<float> y, common::ThreadPool& pool,
            Workspace& ws) {
  check_sizes(w, x.size(), 1, y.size());
  const Product p{&w, y};
  run_products({&p, 1}, x, 1, pool, ws);
}

void matmul(const WeightMatrix& w, std::span<const float> x, std::size_t n_tok, std::span<float> y,
            common::ThreadPool& pool, Workspace& ws) {
  check_sizes(w, x.size(), n_tok, y.size());
  if (n_tok == 0) return;
  const Product p{&w, y};
  run_products({&p, 1}, x, n_tok, pool, ws);
}

void products(std::span<const Product> ps, std::span<const float> x, std::size_t n_tok, common::ThreadPool& pool,
              Workspace& ws) {
  if (ps.empty() || n_tok == 0) return;
  bool shared = ps.size() <= kMaxJobs;
  for (const Product& p : ps) shared = shared && p.w->type == ps[0].w->type && p.w->n_cols == ps[0].w->n_cols;
  if (shared) return run_products(ps, x, n_tok, pool, ws);
  for (const Product& p : ps) matmul(*p.w, x, n_tok, p.y, pool, ws);
}

namespace ref {

void matvec(const WeightMatrix& w, std::span<const float> x, std::span<float> y) {
  matmul(w, x, 1, y);
}

void matmul(const WeightMatrix& w, std::span<const float> x, std::size_t n_tok, std::span<float> y) {
  check_sizes(w, x.size(), n_tok, y.size());
  if (w.layout == WeightLayout::rows16) {  // back to GGUF rows
    WeightMatrix g{w.type, nullptr, w.n_rows, w.n_cols};
    std::vector<std::uint8_t> rows(w.n_rows * g.row_bytes());
    for (std::size_t r = 0; r < w.n_rows; ++r) unpack_rows16_row(w, r, rows.data() + r * g.row_bytes());
    g.data = rows.data();
    return matmul(g, x, n_tok, y);
  }
  const std::size_t nb = w.n_cols / kQK;
  std::vector<std::int8_t> qs(nb * kQK);
  std::vector<float> d(nb);
  std::vector<std::int32_t> sum(nb);
  for (std::size_t t = 0; t < n_tok; ++t) {
    const float* xt = x.data() + t * w.n_cols;
    if (is_quantized(w.type)) ref::quantize_act_q8(xt, w.n_cols, qs.data(), d.data(), sum.data());
    const Q8Act a{qs.data(), d.data(), sum.data()};
    for (std::size_t r = 0; r < w.n_rows; ++r) {
      const std::uint8_t* p = row_ptr(w, r);
      float v = 0.0f;
      switch (w.type) {
        case GgmlType::F32: v = ref::dot_f32(reinterpret_cast<const float*>(p), xt, w.n_cols); break;
        case GgmlType::F16: v = ref::dot_f16_f32(reinterpret_cast<const fp16_t*>(p), xt, w.n_cols); break;
        case GgmlType::Q8_0: v = ref::dot_q8_0_q8(reinterpret_cast<const BlockQ8_0*>(p), a, nb); break;
        case GgmlType::Q4_0: v = ref::dot_q4_0_q8(reinterpret_cast<const BlockQ4_0*>(p), a, nb); break;
        default: break;
      }
      y[t * w.n_rows + r] = v;
    }
  }
}

}  // namespace ref

}  // namespace powerinfer2::ops
