// The CPU kernels of src/ops against their scalar references and against double precision:
// fp16 conversion (exhaustive), Q8_0 / Q4_0 quantization (exact bytes, error bounds), the
// dot products (random, odd-sized, misaligned inputs) and matvec / matmul on 1-3 threads.
// This file is also built for AVX2 and for plain x86-64 (see CMakeLists.txt), so every
// SIMD path is exercised on an AVX-512 machine.
#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "alloc_counter.hpp"
#include "common/errors.hpp"
#include "common/thread_pool.hpp"
#include "ops/dot.hpp"
#include "ops/fp16.hpp"
#include "ops/matmul.hpp"
#include "ops/packed.hpp"
#include "ops/quants.hpp"
#include "test_support.hpp"

namespace ops = powerinfer2::ops;
using powerinfer2::io::GgmlType;

namespace {

// Dot products: |simd - ref| <= kDotRelTol * sum |a_i b_i| (float accumulation in a
// different order). For the quantized types the scale is sum over blocks of
// |d_w d_x| sum_j (|q_j| + bias) |x_j|: the kernels multiply weight bytes made unsigned by
// a bias (128 for Q8_0; 8 for Q4_0, whose 4-bit values are stored biased) and subtract
// bias * sum(x) per block, and the lanes holding partial sums are rounded to float one by
// one, so the rounding scales with the biased terms, not only with the products.
constexpr double kDotRelTol = 1e-5;
// matvec / matmul against double precision, relative to the same scale.
constexpr double kMatRelTol = 2e-5;
constexpr double kBiasQ8 = 128, kBiasQ4 = 8;

// Memory at a chosen misalignment: `offset_bytes` past a 64-byte boundary.
template <class T>
class Misaligned {
 public:
  Misaligned(std::size_t n, std::size_t offset_bytes) : raw_(n * sizeof(T) + 128), n_(n) {
    auto base = reinterpret_cast<std::uintptr_t>(raw_.data());
    auto p = (base + 63) / 64 * 64 + offset_bytes;
    REQUIRE(p % alignof(T) == 0);
    ptr_ = reinterpret_cast<T*>(p);
    std::memset(static_cast<void*>(ptr_), 0, n * sizeof(T));
  }
  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  T& operator[](std::size_t i) { return ptr_[i]; }
  std::size_t size() const { return n_; }

 private:
  std::vector<std::uint8_t> raw_;
  T* ptr_ = nullptr;
  std::size_t n_;
};

// Values of mixed scales per 32-block, a few exact zeros and an occasional outlier, as
// activations and weights have.
void fill_random(float* x, std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  float scale = 1.0f;
  for (std::size_t i = 0; i < n; ++i) {
    if (i % 32 == 0) scale = std::exp2(unit(rng) * 8.0f - 6.0f);
    const float u = unit(rng);
    x[i] = u < 0.02f ? 0.0f : u > 0.995f ? 20.0f * scale * normal(rng) : scale * normal(rng);
  }
}

double fp16_exact(std::uint16_t h) {
  const int exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  return sign * std::ldexp(1024 + mant, exp - 25);
}

struct QuantizedAct {
  explicit QuantizedAct(std::size_t n, std::size_t misalign = 0)
      : qs(n, misalign), d(n / 32, misalign ? 4 : 0), sum(n / 32, misalign ? 4 : 0) {}
  Misaligned<std::int8_t> qs;
  Misaligned<float> d;
  Misaligned<std::int32_t> sum;
  ops::Q8Act view() const { return ops::Q8Act{qs.data(), d.data(), sum.data()}; }
};

std::string simd() { return ops::simd_name(); }

// The kernels' SIMD paths, in order of the instructions they need.
enum class Level { scalar, avx2, avx512_vnni };

const char* level_name(Level l) {
  return l == Level::avx512_vnni ? "avx512-vnni" : l == Level::avx2 ? "avx2" : "scalar";
}

// The path this translation unit's target flags enable (ops/simd.hpp's condition).
Level compiled_level() {
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__AVX512VBMI__)
  return Level::avx512_vnni;
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
  return Level::avx2;
#else
  return Level::scalar;
#endif
}

// The best path the running CPU and OS support, from cpuid and xgetbv (OS-enabled register
// state): AVX2 + FMA + F16C; AVX-512 F/BW/DQ/VL + VNNI + VBMI.
Level cpu_level() {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return Level::scalar;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
  if (!osxsave || !avx) return Level::scalar;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 0x6u) != 0x6u) return Level::scalar;  // SSE and AVX state
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return Level::scalar;
  const bool avx2 = b & (1u << 5);
  const bool avx512 = (b & (1u << 16)) && (b & (1u << 17)) && (b & (1u << 30)) && (b & (1u << 31)) &&  // F DQ BW VL
                      (c & (1u << 1)) && (c & (1u << 11)) &&                                            // VBMI VNNI
                      (xcr0_lo & 0xE6u) == 0xE6u;  // opmask and ZMM state
  if (avx512 && avx2 && fma && f16c) return Level::avx512_vnni;
  if (avx2 && fma && f16c) return Level::avx2;
#endif
  return Level::scalar;
}

}  // namespace

TEST_CASE("powerinfer2 ops: the kernels were built for the expected instruction set", "[unit]") {
  // This file is compiled with the kernels' flags: its own predefined macros say which path
  // those flags select, and cpuid says which the running CPU offers.
  const Level built = compiled_level(), cpu = cpu_level();
  INFO("kernels: " << simd() << ", compile flags: " << level_name(built) << ", CPU: " << level_name(cpu));
  CHECK(simd() == level_name(built));
  // Flags beyond the CPU fault at the first such instruction: this names the cause.
  CHECK(built <= cpu);
#if defined(PWPI_OPS_VARIANT)  // the AVX2 / plain x86-64 builds of this file
  if (std::string(PWPI_OPS_VARIANT) == "scalar") CHECK(simd() == "scalar");
  if (std::string(PWPI_OPS_VARIANT) == "avx2") CHECK(simd() == level_name(std::min(cpu, Level::avx2)));
#elif defined(PWPI_TEST_NATIVE)
  // -march=native: the best path the CPU supports.
  CHECK(simd() == level_name(cpu));
#endif
  WARN("kernels: " << simd() << " (CPU offers " << level_name(cpu) << ")");
}

// --- fp16 / bf16 ------------------------------------------------------------------------------

TEST_CASE("powerinfer2 ops: fp16 -> fp32 is exact for all 65536 halves", "[unit]") {
  std::size_t mismatches = 0;
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float r = ops::ref::fp16_to_fp32(h);
    const float f = ops::fp16_to_fp32(h);
    if (std::bit_cast<std::uint32_t>(r) != std::bit_cast<std::uint32_t>(f)) ++mismatches;  // F16C agrees bit for bit
    const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0;
    if (is_nan) {
      // Quiet NaN, same sign, payload kept in the top mantissa bits.
      const std::uint32_t bits = std::bit_cast<std::uint32_t>(r);
      if (!std::isnan(r) || (bits & 0x400000u) == 0 || ((bits >> 13) & 0x1ffu) != (h & 0x1ffu) ||
          (bits >> 31) != (h >> 15u))
        ++mismatches;
    } else if ((h & 0x7fff) == 0x7c00) {
      if (r != ((h & 0x8000) ? -INFINITY : INFINITY)) ++mismatches;
    } else if (static_cast<double>(r) != fp16_exact(h) || std::signbit(r) != ((h & 0x8000) != 0)) {
      ++mismatches;
    }
    // Round trip: every half comes back (NaNs come back quiet).
    const std::uint16_t back = ops::ref::fp32_to_fp16(r);
    const std::uint16_t want = is_nan ? static_cast<std::uint16_t>(h | 0x200) : h;
    if (back != want || ops::fp32_to_fp16(r) != want) ++mismatches;
  }
  CHECK(mismatches == 0);
}

TEST_CASE("powerinfer2 ops: fp32 -> fp16 rounds to nearest even at every halfway point", "[unit]") {
  std::size_t mismatches = 0;
  for (std::uint32_t h = 0; h < 0x7c00; ++h) {  // every finite non-negative half and the next one up
    const float lo = ops::ref::fp16_to_fp32(static_cast<std::uint16_t>(h));
    const float hi = h + 1 == 0x7c00 ? 65536.0f : ops::ref::fp16_to_fp32(static_cast<std::uint16_t>(h + 1));
    const float mid = (lo + hi) / 2;  // exact: 12 significant bits
    const auto even = static_cast<std::uint16_t>((h & 1) ? h + 1 : h);
    for (float sign : {1.0f, -1.0f}) {
      const std::uint16_t s = sign < 0 ? 0x8000 : 0;
      for (auto conv : {&ops::ref::fp32_to_fp16, +[](float f) { return ops::fp32_to_fp16(f); }}) {
        if (conv(sign * mid) != (even | s)) ++mismatches;
        if (conv(sign * std::nextafter(mid, 0.0f)) != (h | s)) ++mismatches;
        if (conv(sign * std::nextafter(mid, INFINITY)) != ((h + 1) | s)) ++mismatches;
        if (conv(sign * lo) != (h | s)) ++mismatches;
      }
    }
  }
  CHECK(mismatches == 0);
}

TEST_CASE("powerinfer2 ops: fp16 special values and random floats agree with F16C", "[unit]") {
  using ops::ref::fp32_to_fp16;
  CHECK(fp32_to_fp16(0.0f) == 0x0000);
  CHECK(fp32_to_fp16(-0.0f) == 0x8000);
  CHECK(fp32_to_fp16(INFINITY) == 0x7c00);
  CHECK(fp32_to_fp16(-INFINITY) == 0xfc00);
  CHECK((fp32_to_fp16(std::numeric_limits<float>::quiet_NaN()) & 0x7e00) == 0x7e00);
  CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
  CHECK(fp32_to_fp16(65519.99f) == 0x7bff);
  CHECK(fp32_to_fp16(65520.0f) == 0x7c00);
  CHECK(fp32_to_fp16(1e10f) == 0x7c00);
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -24)) == 0x0001);  // smallest subnormal
  CHECK(fp32_to_fp16(std::ldexp(1.0f, -25)) == 0x0000);  // halfway to it: ties to even (0)
  CHECK(fp32_to_fp16(std::ldexp(1.5f, -25)) == 0x0001);
  CHECK(fp32_to_fp16(std::ldexp(3.0f, -25)) == 0x0002);  // 1.5 units: ties to even (2)
  CHECK(fp32_to_fp16(std::ldexp(1023.5f, -24)) == 0x0400);  // largest subnormal rounds up to the smallest normal
  CHECK(fp32_to_fp16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(fp32_to_fp16(1.0f) == 0x3c00);
  CHECK(fp32_to_fp16(-2.5f) == 0xc100);

  std::mt19937 rng(7);
  std::size_t mismatches = 0;
  for (int i = 0; i < 1 << 20; ++i) {
    const float f = std::bit_cast<float>(static_cast<std::uint32_t>(rng()));
    if (ops::fp32_to_fp16(f) != fp32_to_fp16(f)) ++mismatches;
  }
  CHECK(mismatches == 0);

  // Row conversions on odd lengths and misaligned pointers.
  for (std::size_t n : {1u, 15u, 16u, 33u, 1000u}) {
    Misaligned<float> x(n, 4), y(n, 8), z(n, 4);
    Misaligned<std::uint16_t> h(n, 2), h_ref(n, 2);
    fill_random(x.data(), n, static_cast<std::uint32_t>(n));
    ops::fp32_to_fp16_row(x.data(), h.data(), n);
    ops::ref::fp32_to_fp16_row(x.data(), h_ref.data(), n);
    ops::fp16_to_fp32_row(h.data(), y.data(), n);
    ops::ref::fp16_to_fp32_row(h.data(), z.data(), n);
    for (std::size_t i = 0; i < n; ++i) {
      CHECK(h[i] == h_ref[i]);
      CHECK(std::bit_cast<std::uint32_t>(y[i]) == std::bit_cast<std::uint32_t>(z[i]));
    }
  }
}

TEST_CASE("powerinfer2 ops: bf16 rounds to nearest even and keeps NaN", "[unit]") {
  CHECK(ops::fp32_to_bf16(1.0f) == 0x3f80);
  CHECK(ops::fp32_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie, even stays
  CHECK(ops::fp32_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie, odd rounds up
  CHECK(ops::fp32_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81);
  CHECK(std::isnan(ops::bf16_to_fp32(ops::fp32_to_bf16(std::bit_cast<float>(0x7f800001u)))));
  CHECK(ops::fp32_to_bf16(INFINITY) == 0x7f80);
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float f = ops::bf16_to_fp32(static_cast<std::uint16_t>(h));
    if (!std::isnan(f)) REQUIRE(ops::fp32_to_bf16(f) == h);
  }
}

// --- Q8_0 / Q4_0 ------------------------------------------------------------------------------

TEST_CASE("powerinfer2 ops: Q8_0 and Q4_0 blocks follow ggml's reference quantizer", "[unit]") {
  // A block 0..31: Q8_0 d = 31/127, q = round(i * 127 / 31); Q4_0 d = 31 / -8.
  float x[32];
  for (int i = 0; i < 32; ++i) x[i] = static_cast<float>(i);
  ops::BlockQ8_0 q8;
  ops::quantize_row_q8_0(x, &q8, 32);
  CHECK(q8.d == ops::fp32_to_fp16(31.0f / 127.0f));
  const float id8 = 1.0f / (31.0f / 127.0f);
  for (int i = 0; i < 32; ++i) CHECK(q8.qs[i] == static_cast<int>(std::round(static_cast<float>(i) * id8)));
  CHECK(q8.qs[31] == 127);
  ops::BlockQ4_0 q4;
  ops::quantize_row_q4_0(x, &q4, 32);
  CHECK(q4.d == ops::fp32_to_fp16(31.0f / -8.0f));
  CHECK((q4.qs[15] >> 4) == 0);  // element 31, the maximum, maps to q = 0: (0 - 8) * d = 31
  CHECK((q4.qs[0] & 15) == 8);   // element 0 is zero

  // All zeros: d = 0 and every value encodes zero.
  float z[64] = {};
  ops::BlockQ4_0 z4[2];
  ops::BlockQ8_0 z8[2];
  ops::quantize_row_q4_0(z, z4, 64);
  ops::quantize_row_q8_0(z, z8, 64);
  for (int b = 0; b < 2; ++b) {
    CHECK(z4[b].d == 0x8000);  // 0 / -8 = -0, as in ggml and gguf.quants
    CHECK(z8[b].d == 0);
    for (int i = 0; i < 16; ++i) CHECK(z4[b].qs[i] == 0x88);
    for (int i = 0; i < 32; ++i) CHECK(z8[b].qs[i] == 0);
  }

  // Exact ties: amax 127 gives id = 1, so k + 0.5 rounds away from zero.
  float t[32];
  for (int i = 0; i < 32; ++i) t[i] = static_cast<float>(i % 2 ? -(i % 16) : (i % 16)) + 0.5f;
  t[31] = 127.0f;
  ops::quantize_row_q8_0(t, &q8, 32);
  for (int i = 0; i < 31; ++i) CHECK(q8.qs[i] == static_cast<int>(std::round(t[i])));
  CHECK(q8.qs[1] == -1);  // -0.5 rounds away from zero
  CHECK(q8.qs[2] == 3);   // 2.5 too
}

namespace {

std::string hex(const void* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    const auto b = static_cast<const std::uint8_t*>(p)[i];
    s += digits[b >> 4];
    s += digits[b & 15];
  }
  return s;
}

}  // namespace

TEST_CASE("powerinfer2 ops: Q8_0 / Q4_0 bytes equal gguf.quants' for a fixed input", "[golden]") {
  // 96 exactly representable pseudo-random values (24-bit integers / 2^20, from an LCG),
  // then a block of exact .5 ties. The expected bytes are PyPI gguf 0.19's
  // gguf.quants.quantize(x, Q8_0 / Q4_0), bit-exact with ggml's reference quantizer
  // (check_quants_reference.py checks the quantize command against it when gguf is installed).
  float x[128];
  std::uint32_t s = 12345;
  for (int i = 0; i < 96; ++i) {
    s = s * 1664525u + 1013904223u;
    x[i] = static_cast<float>(static_cast<std::int32_t>(s >> 8) - (1 << 23)) / static_cast<float>(1 << 20);
  }
  for (int k = 0; k < 32; ++k) x[96 + k] = static_cast<float>((k % 16) * (k % 2 ? 1 : -1)) + 0.5f;
  x[127] = 127.0f;
  ops::BlockQ8_0 q8[4];
  ops::BlockQ4_0 q4[4];
  ops::quantize_row_q8_0(x, q8, 128);
  ops::quantize_row_q4_0(x, q4, 128);
  CHECK(hex(q8, sizeof q8) ==
        "f62b85840b23699cff0c19498a3f789233f6e576e8747f2aec00c9ec2da7965bd081d02bf6c913798149ccd1770c2c2920a7704"
        "6f53bd4381445f1b3f52d0662e4703fa2c72a38d3d5595a9e8de371440bb4df705fd9643a0978287fdd56628623228b187685003c"
        "0102fe04fc06fa08f80af60cf40ef2100102fe04fc06fa08f80af60cf40ef27f");
  CHECK(hex(q4, sizeof q4) ==
        "e6bbaf1fa716015e9887b6935fe4f02fb5f9c13b77c559cf90cd75357fb98beb6af2cf2cb9ba244b7b02620eaf3a21f4676dfa61"
        "12faf0cb88888888888888888877997799779907");
}

TEST_CASE("powerinfer2 ops: quantize -> dequantize stays within the block error bound", "[unit]") {
  const std::size_t n = 4096 + 32;
  std::vector<float> x(n), y8(n), y4(n);
  fill_random(x.data(), n, 11);
  std::vector<ops::BlockQ8_0> q8(n / 32);
  std::vector<ops::BlockQ4_0> q4(n / 32);
  ops::quantize_row_q8_0(x.data(), q8.data(), n);
  ops::quantize_row_q4_0(x.data(), q4.data(), n);
  ops::dequantize_row_q8_0(q8.data(), y8.data(), n);
  ops::dequantize_row_q4_0(q4.data(), y4.data(), n);
  double worst8 = 0, worst4 = 0;  // error / block scale
  for (std::size_t b = 0; b < n / 32; ++b) {
    float amax = 0;
    for (std::size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[b * 32 + i]));
    const double d8 = amax / 127.0, d4 = amax / 8.0;
    for (std::size_t i = b * 32; i < b * 32 + 32; ++i) {
      if (d8 == 0) {
        CHECK(y8[i] == 0.0f);
        CHECK(y4[i] == 0.0f);
        continue;
      }
      worst8 = std::max(worst8, std::fabs(x[i] - y8[i]) / d8);
      worst4 = std::max(worst4, std::fabs(x[i] - y4[i]) / d4);
    }
  }
  // Q8_0: half a step, plus the scale's fp16 rounding (2^-11 relative) times up to 127
  // steps. Q4_0: a full step, since values above 7.5 steps clamp to 7 (the grid is
  // -8..7), plus the same fp16 term times 8 steps.
  WARN("max |x - dequant(quant(x))| / d: Q8_0 " << worst8 << ", Q4_0 " << worst4);
  CHECK(worst8 <= 0.5 + 127.0 / 2048 + 1e-6);
  CHECK(worst4 <= 1.0 + 8.0 / 2048 + 1e-6);
}

TEST_CASE("powerinfer2 ops: activation quantization gives ggml's Q8_0 values", "[unit]") {
  for (std::size_t n : {32u, 64u, 96u, 4128u}) {
    for (std::size_t misalign : {0u, 1u}) {
      Misaligned<float> x(n, misalign * 4);
      fill_random(x.data(), n, static_cast<std::uint32_t>(n + misalign));
      if (n >= 64) {  // a block of exact ties: amax 127 makes id = 1
        for (std::size_t i = 32; i < 64; ++i) x[i] = static_cast<float>(static_cast<int>(i % 7) - 3) + 0.5f;
        x[40] = -127.0f;
      }
      std::vector<ops::BlockQ8_0> blocks(n / 32);
      ops::quantize_row_q8_0(x.data(), blocks.data(), n);
      QuantizedAct r(n), s(n, misalign);
      ops::ref::quantize_act_q8(x.data(), n, r.qs.data(), r.d.data(), r.sum.data());
      ops::quantize_act_q8(x.data(), n, s.qs.data(), s.d.data(), s.sum.data());
      for (std::size_t b = 0; b < n / 32; ++b) {
        INFO("n " << n << " block " << b);
        CHECK(r.d[b] == ops::fp16_to_fp32(blocks[b].d));
        CHECK(std::memcmp(r.qs.data() + 32 * b, blocks[b].qs, 32) == 0);
        int sum = 0;
        for (int i = 0; i < 32; ++i) sum += blocks[b].qs[i];
        CHECK(r.sum[b] == sum);
        // The SIMD quantizer gives the same bits.
        CHECK(std::bit_cast<std::uint32_t>(s.d[b]) == std::bit_cast<std::uint32_t>(r.d[b]));
        CHECK(std::memcmp(s.qs.data() + 32 * b, r.qs.data() + 32 * b, 32) == 0);
        CHECK(s.sum[b] == r.sum[b]);
      }
    }
  }
}

// --- Dot products -----------------------------------------------------------------------------

TEST_CASE("powerinfer2 ops: dot products match their scalar references", "[unit]") {
  double worst_f32 = 0, worst_f16 = 0, worst_q8 = 0, worst_q4 = 0;
  auto rel = [](double got, double want, double scale) { return scale > 0 ? std::fabs(got - want) / scale : std::fabs(got - want); };
  for (std::size_t n : {32u, 64u, 96u, 4096u + 32u, 1u, 7u, 33u, 100u}) {
    for (std::size_t misalign : {0u, 1u, 3u}) {
      INFO("n " << n << ", misaligned by " << misalign);
      Misaligned<float> a(n, 4 * misalign), b(n, 4 * ((misalign + 1) % 4));
      fill_random(a.data(), n, static_cast<std::uint32_t>(3 * n + misalign));
      fill_random(b.data(), n, static_cast<std::uint32_t>(5 * n + misalign));
      Misaligned<std::uint16_t> h(n, 2 * misalign);
      ops::fp32_to_fp16_row(a.data(), h.data(), n);
      double abs_f32 = 0, abs_f16 = 0;
      for (std::size_t i = 0; i < n; ++i) {
        abs_f32 += std::fabs(static_cast<double>(a[i]) * b[i]);
        abs_f16 += std::fabs(static_cast<double>(ops::fp16_to_fp32(h[i])) * b[i]);
      }
      const double e32 = rel(ops::dot_f32(a.data(), b.data(), n), ops::ref::dot_f32(a.data(), b.data(), n), abs_f32);
      const double e16 = rel(ops::dot_f16_f32(h.data(), b.data(), n), ops::ref::dot_f16_f32(h.data(), b.data(), n), abs_f16);
      CHECK(e32 <= kDotRelTol);
      CHECK(e16 <= kDotRelTol);
      // matvec's prefetching versions: the same arithmetic, the same bits.
      CHECK(ops::dot_f32_streaming(a.data(), b.data(), n) == ops::dot_f32(a.data(), b.data(), n));
      CHECK(ops::dot_f16_f32_streaming(h.data(), b.data(), n) == ops::dot_f16_f32(h.data(), b.data(), n));
      worst_f32 = std::max(worst_f32, e32);
      worst_f16 = std::max(worst_f16, e16);
      if (n % 32 != 0) continue;

      const std::size_t nb = n / 32;
      Misaligned<ops::BlockQ8_0> w8(nb, 2 * misalign);
      Misaligned<ops::BlockQ4_0> w4(nb, 2 * misalign);
      ops::quantize_row_q8_0(a.data(), w8.data(), n);
      ops::quantize_row_q4_0(a.data(), w4.data(), n);
      if (misalign == 3) w8[0].qs[5] = -128;  // ggml's format allows -128 though its quantizer never writes it
      QuantizedAct x(n, misalign);
      ops::quantize_act_q8(b.data(), n, x.qs.data(), x.d.data(), x.sum.data());
      double abs8 = 0, abs4 = 0;
      for (std::size_t k = 0; k < nb; ++k) {
        double s8 = 0, s4 = 0;
        for (std::size_t j = 0; j < 32; ++j) {
          const int xq = x.qs[k * 32 + j];
          s8 += (std::abs(w8[k].qs[j]) + kBiasQ8) * std::abs(xq);
          const int q4 = j < 16 ? (w4[k].qs[j] & 15) : (w4[k].qs[j - 16] >> 4);
          s4 += (std::abs(q4 - 8) + kBiasQ4) * std::abs(xq);
        }
        abs8 += s8 * std::fabs(ops::fp16_to_fp32(w8[k].d) * x.d[k]);
        abs4 += s4 * std::fabs(ops::fp16_to_fp32(w4[k].d) * x.d[k]);
      }
      const double e8 = rel(ops::dot_q8_0_q8(w8.data(), x.view(), nb), ops::ref::dot_q8_0_q8(w8.data(), x.view(), nb), abs8);
      const double e4 = rel(ops::dot_q4_0_q8(w4.data(), x.view(), nb), ops::ref::dot_q4_0_q8(w4.data(), x.view(), nb), abs4);
      CHECK(e8 <= kDotRelTol);
      CHECK(e4 <= kDotRelTol);
      worst_q8 = std::max(worst_q8, e8);
      worst_q4 = std::max(worst_q4, e4);
    }
  }
  WARN(simd() << " dot vs scalar reference, max |diff| / scale (tolerance " << kDotRelTol << "): f32 " << worst_f32
              << ", f16 " << worst_f16 << ", q8_0 " << worst_q8 << ", q4_0 " << worst_q4);
}

// --- matvec / matmul --------------------------------------------------------------------------

namespace {

struct TestMatrix {
  GgmlType type;
  std::size_t n_rows, n_cols;
  std::vector<std::uint8_t> raw;
  std::size_t offset = 0;  // of the first row in raw
  std::vector<double> deq;        // [n_rows][n_cols], the values the kernels multiply
  std::vector<double> bias;       // [n_rows][n_cols / 32]: |d| * the kernels' bias, per block

  ops::WeightMatrix view() const { return ops::WeightMatrix{type, raw.data() + offset, n_rows, n_cols}; }
};

TestMatrix make_matrix(GgmlType type, std::size_t n_rows, std::size_t n_cols, std::uint32_t seed) {
  // Rows start 4 (F32) or 2 bytes past an aligned address: element-aligned only.
  TestMatrix m{type, n_rows, n_cols, {}, type == GgmlType::F32 ? 4u : 2u, std::vector<double>(n_rows * n_cols),
               std::vector<double>(n_rows * (n_cols / 32 + 1))};
  const std::size_t row_bytes = ops::WeightMatrix{type, nullptr, n_rows, n_cols}.row_bytes();
  m.raw.resize(n_rows * row_bytes + m.offset + 64);
  std::vector<float> row(n_cols), back(n_cols);
  for (std::size_t r = 0; r < n_rows; ++r) {
    fill_random(row.data(), n_cols, seed + static_cast<std::uint32_t>(r));
    std::uint8_t* dst = m.raw.data() + m.offset + r * row_bytes;
    switch (type) {
      case GgmlType::F32:
        std::memcpy(dst, row.data(), row_bytes);
        back = row;
        break;
      case GgmlType::F16: {
        std::vector<std::uint16_t> h(n_cols);
        ops::fp32_to_fp16_row(row.data(), h.data(), n_cols);
        std::memcpy(dst, h.data(), row_bytes);
        ops::fp16_to_fp32_row(h.data(), back.data(), n_cols);
        break;
      }
      case GgmlType::Q8_0: {
        std::vector<ops::BlockQ8_0> q(n_cols / 32);
        ops::quantize_row_q8_0(row.data(), q.data(), n_cols);
        std::memcpy(dst, q.data(), row_bytes);
        ops::dequantize_row_q8_0(q.data(), back.data(), n_cols);
        for (std::size_t b = 0; b < n_cols / 32; ++b) m.bias[r * (n_cols / 32 + 1) + b] = kBiasQ8 * std::fabs(ops::fp16_to_fp32(q[b].d));
        break;
      }
      default: {
        std::vector<ops::BlockQ4_0> q(n_cols / 32);
        ops::quantize_row_q4_0(row.data(), q.data(), n_cols);
        std::memcpy(dst, q.data(), row_bytes);
        ops::dequantize_row_q4_0(q.data(), back.data(), n_cols);
        for (std::size_t b = 0; b < n_cols / 32; ++b) m.bias[r * (n_cols / 32 + 1) + b] = kBiasQ4 * std::fabs(ops::fp16_to_fp32(q[b].d));
        break;
      }
    }
    for (std::size_t c = 0; c < n_cols; ++c) m.deq[r * n_cols + c] = back[c];
  }
  return m;
}

bool quantized(GgmlType t) { return t == GgmlType::Q8_0 || t == GgmlType::Q4_0; }

// y_ref[t][r] in double over the values the kernels see (quantized activations for the
// quantized types), with the tolerance's scale per output (sum |w x|, biased weights for
// the quantized types: see kDotRelTol).
void reference_product(const TestMatrix& m, const std::vector<float>& x, std::size_t n_tok, std::vector<double>& y,
                       std::vector<double>& scale) {
  y.assign(n_tok * m.n_rows, 0.0);
  scale.assign(n_tok * m.n_rows, 0.0);
  std::vector<double> xd(m.n_cols);
  std::vector<std::int8_t> qs(m.n_cols);
  std::vector<float> d(m.n_cols / 32 + 1);
  std::vector<std::int32_t> sum(m.n_cols / 32 + 1);
  for (std::size_t t = 0; t < n_tok; ++t) {
    const float* xt = x.data() + t * m.n_cols;
    if (quantized(m.type)) {
      ops::ref::quantize_act_q8(xt, m.n_cols, qs.data(), d.data(), sum.data());
      for (std::size_t c = 0; c < m.n_cols; ++c) xd[c] = static_cast<double>(qs[c]) * d[c / 32];
    } else {
      for (std::size_t c = 0; c < m.n_cols; ++c) xd[c] = xt[c];
    }
    for (std::size_t r = 0; r < m.n_rows; ++r) {
      double s = 0, a = 0;
      for (std::size_t c = 0; c < m.n_cols; ++c) {
        s += m.deq[r * m.n_cols + c] * xd[c];
        a += (std::fabs(m.deq[r * m.n_cols + c]) + m.bias[r * (m.n_cols / 32 + 1) + c / 32]) * std::fabs(xd[c]);
      }
      y[t * m.n_rows + r] = s;
      scale[t * m.n_rows + r] = a;
    }
  }
}

double max_rel_error(const std::vector<float>& got, const std::vector<double>& want, const std::vector<double>& scale) {
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double e = std::fabs(got[i] - want[i]) / std::max(scale[i], 1e-30);
    worst = std::max(worst, e);
  }
  return worst;
}

}  // namespace

TEST_CASE("powerinfer2 ops: matvec and matmul match double precision on 1, 2 and 3 threads", "[unit]") {
  const GgmlType type = GENERATE(GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0);
  const std::size_t n_threads = GENERATE(1u, 2u, 3u);
  common::ThreadPool pool(n_threads);
  ops::Workspace ws(24, 4128, 3);
  double worst_mv = 0, worst_mm = 0, worst_vs_ref = 0, worst_rows16 = 0;
  for (std::size_t n_cols : {32u, 64u, 96u, 4096u + 32u, 7u, 531u}) {
    if (quantized(type) && n_cols % 32 != 0) continue;  // whole blocks only
    for (std::size_t n_rows : {1u, 7u, 33u, 83u}) {
      const TestMatrix m = make_matrix(type, n_rows, n_cols, static_cast<std::uint32_t>(n_rows * 1000 + n_cols));
      for (std::size_t n_tok : {1u, 2u, 3u, 5u, 13u, 24u}) {
        INFO(powerinfer2::io::ggml_type_name(type) << " " << n_rows << " x " << n_cols << ", " << n_tok << " tokens, "
                                                   << n_threads << " threads");
        std::vector<float> x(n_tok * n_cols);
        fill_random(x.data(), x.size(), static_cast<std::uint32_t>(n_tok + 7 * n_cols));
        std::vector<double> want, scale;
        reference_product(m, x, n_tok, want, scale);
        std::vector<float> y(n_tok * n_rows, NAN);
        ops::matmul(m.view(), x, n_tok, y, pool, ws);
        const double e = max_rel_error(y, want, scale);
        CHECK(e <= kMatRelTol);
        worst_mm = std::max(worst_mm, e);
        if (quantized(type)) {  // the same product on the rows16 layout
          const ops::PackedWeights packed(m.view(), &pool);
          std::vector<float> yp(n_tok * n_rows, NAN);
          ops::matmul(packed.view(), x, n_tok, yp, pool, ws);
          const double ep = max_rel_error(yp, want, scale);
          CHECK(ep <= kMatRelTol);
          worst_rows16 = std::max(worst_rows16, ep);
        }
        if (n_tok == 1) {
          std::vector<float> yv(n_rows, NAN), yr(n_rows, NAN);
          ops::matvec(m.view(), x, yv, pool, ws);
          ops::ref::matvec(m.view(), x, yr);
          const double ev = max_rel_error(yv, want, scale);
          CHECK(ev <= kMatRelTol);
          worst_mv = std::max(worst_mv, ev);
          std::vector<double> yr_d(yr.begin(), yr.end());
          const double er = max_rel_error(yv, yr_d, scale);
          CHECK(er <= kMatRelTol);
          worst_vs_ref = std::max(worst_vs_ref, er);
        }
      }
    }
  }
  WARN(simd() << " " << powerinfer2::io::ggml_type_name(type) << ", " << n_threads
              << " threads: max |y - y_double| / scale (tolerance " << kMatRelTol << "): matvec " << worst_mv
              << ", matmul " << worst_mm << ", rows16 layout " << worst_rows16 << "; matvec vs ref::matvec "
              << worst_vs_ref);
}

TEST_CASE("powerinfer2 ops: quantized activations stay within their error bound of the F32 product", "[unit]") {
  // |y_q - W x| <= sum_i |w_i| * (d_x/2 + 127 d_x 2^-11) per block, plus float rounding.
  common::ThreadPool pool(2);
  ops::Workspace ws(1, 4128, 2);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    const TestMatrix m = make_matrix(type, 33, 4128, 99);
    std::vector<float> x(4128), y(33);
    fill_random(x.data(), x.size(), 5);
    ops::matvec(m.view(), x, y, pool, ws);
    double worst = 0;
    for (std::size_t r = 0; r < 33; ++r) {
      double exact = 0, bound = 0;
      for (std::size_t b = 0; b < 4128 / 32; ++b) {
        float amax = 0;
        for (std::size_t j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
        const double dx = amax / 127.0;
        for (std::size_t j = b * 32; j < b * 32 + 32; ++j) {
          exact += m.deq[r * 4128 + j] * x[j];
          bound += std::fabs(m.deq[r * 4128 + j]) * dx * (0.5 + 127.0 / 2048);
        }
      }
      CHECK(std::fabs(y[r] - exact) <= bound * 1.001 + 1e-6);
      worst = std::max(worst, std::fabs(y[r] - exact) / bound);
    }
    WARN(powerinfer2::io::ggml_type_name(type) << ": activation quantization error, max fraction of its bound " << worst);
  }
}

TEST_CASE("powerinfer2 ops: the rows16 layout keeps every byte and its products match", "[unit]") {
  common::ThreadPool pool(2);
  ops::Workspace ws(13, 4128, 2);
  for (GgmlType type : {GgmlType::Q8_0, GgmlType::Q4_0}) {
    for (std::size_t n_rows : {1u, 16u, 33u}) {
      for (std::size_t n_cols : {32u, 96u, 4128u}) {  // odd block counts pair with a zero block
        INFO(powerinfer2::io::ggml_type_name(type) << " " << n_rows << " x " << n_cols);
        const TestMatrix m = make_matrix(type, n_rows, n_cols, 17);
        const ops::PackedWeights packed(m.view());
        CHECK(packed.size_bytes() == ops::rows16_bytes(type, n_rows, n_cols));
        CHECK(reinterpret_cast<std::uintptr_t>(packed.view().data) % 64 == 0);
        const std::size_t row_bytes = m.view().row_bytes();
        std::vector<std::uint8_t> row(row_bytes);
        for (std::size_t r = 0; r < n_rows; ++r) {
          ops::unpack_rows16_row(packed.view(), r, row.data());
          CHECK(std::memcmp(row.data(), m.raw.data() + m.offset + r * row_bytes, row_bytes) == 0);
        }
        // Products on rows16, on 1 and 13 tokens, within the tolerance of double precision.
        std::vector<float> x(13 * n_cols);
        fill_random(x.data(), x.size(), 23);
        for (std::size_t n_tok : {1u, 13u}) {
          std::vector<float> xt(x.begin(), x.begin() + static_cast<std::ptrdiff_t>(n_tok * n_cols));
          std::vector<double> want, scale;
          reference_product(m, xt, n_tok, want, scale);
          std::vector<float> y(n_tok * n_rows, NAN);
          ops::matmul(packed.view(), xt, n_tok, y, pool, ws);
          CHECK(max_rel_error(y, want, scale) <= kMatRelTol);
        }
      }
    }
  }
  CHECK(ops::rows16_pays() == (simd() == "avx512-vnni"));
}

TEST_CASE("powerinfer2 ops: products of one input equal separate matmuls and allocate nothing", "[unit]") {
  // q/k/v-like and gate/up-like groups in one parallel region: the same values as one matmul
  // each (same kernels, same quantized input), on the GGUF and the rows16 layout; a group of
  // mixed types falls back to one product after another.
  common::ThreadPool pool(2);
  ops::Workspace ws(13, 160, 2);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    const TestMatrix a = make_matrix(type, 83, 160, 11), b = make_matrix(type, 17, 160, 12), c = make_matrix(type, 40, 160, 13);
    std::vector<std::optional<ops::PackedWeights>> packed(3);
    std::vector<ops::WeightMatrix> gguf{a.view(), b.view(), c.view()}, mats = gguf;
    if (quantized(type))
      for (std::size_t i = 0; i < 3; ++i) mats[i] = packed[i].emplace(gguf[i]).view();
    for (const auto& ws_mats : {gguf, mats}) {
      for (std::size_t n_tok : {1u, 3u, 13u}) {
        std::mt19937 rng(5);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        std::vector<float> x(n_tok * 160);
        for (float& v : x) v = normal(rng);
        std::vector<std::vector<float>> want(3), got(3);
        std::vector<ops::Product> ps;
        for (std::size_t i = 0; i < 3; ++i) {
          want[i].resize(n_tok * ws_mats[i].n_rows);
          got[i].assign(n_tok * ws_mats[i].n_rows, -1.0f);
          ops::matmul(ws_mats[i], x, n_tok, want[i], pool, ws);
          ps.push_back({&ws_mats[i], got[i]});
        }
        ops::products(ps, x, n_tok, pool, ws);  // also the warm-up for the count below
        INFO(powerinfer2::io::ggml_type_name(type) << (ws_mats[0].layout == ops::WeightLayout::rows16 ? " rows16, " : ", ")
                                                   << n_tok << " tokens");
        for (std::size_t i = 0; i < 3; ++i) CHECK(got[i] == want[i]);
        const std::size_t before = testing::allocation_count();
        ops::products(ps, x, n_tok, pool, ws);
        CHECK(testing::allocation_count() - before == 0);
      }
    }
  }
  // Mixed types: one product after another, same values.
  const TestMatrix f = make_matrix(GgmlType::F32, 9, 160, 21), q = make_matrix(GgmlType::Q8_0, 7, 160, 22);
  std::vector<float> x(2 * 160, 0.25f), yf(2 * 9), yq(2 * 7), wf(2 * 9), wq(2 * 7);
  const ops::WeightMatrix fv = f.view(), qv = q.view();
  const ops::Product mixed[] = {{&fv, yf}, {&qv, yq}};
  ops::products(mixed, x, 2, pool, ws);
  ops::matmul(fv, x, 2, wf, pool, ws);
  ops::matmul(qv, x, 2, wq, pool, ws);
  CHECK(yf == wf);
  CHECK(yq == wq);
}

TEST_CASE("powerinfer2 ops: ThreadPool::parallel_for and run_on_all allocate nothing", "[unit]") {
  common::ThreadPool pool(2);
  std::atomic<std::size_t> sum{0};
  std::array<std::size_t, 8> big{};  // a closure larger than std::function's inline buffer
  auto body = [&, big](std::size_t b, std::size_t e) { sum += (e - b) + big[0]; };
  pool.parallel_for(0, 1000, 7, body);  // warm-up: threads started, thread-locals made
  const std::size_t before = testing::allocation_count();
  for (int i = 0; i < 10; ++i) pool.parallel_for(0, 1000, 7, body);
  pool.run_on_all([&, big](std::size_t) { sum += big[1]; });
  CHECK(testing::allocation_count() - before == 0);
  CHECK(sum.load() == 11 * 1000);
}

TEST_CASE("powerinfer2 ops: matvec and matmul allocate nothing", "[unit]") {
  common::ThreadPool pool(2);
  ops::Workspace ws(16, 4128, 2);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_0}) {
    const TestMatrix m = make_matrix(type, 83, 4128, 3);
    std::optional<ops::PackedWeights> packed;
    if (quantized(type)) packed.emplace(m.view());
    std::vector<float> x(16 * 4128, 0.5f), y(16 * 83);
    for (const ops::WeightMatrix& w : {m.view(), packed ? packed->view() : m.view()}) {
      for (std::size_t n_tok : {1u, 2u, 16u}) {  // matvec, dot products, packed tiles
        const std::span<const float> xs(x.data(), n_tok * 4128);
        const std::span<float> ys(y.data(), n_tok * 83);
        ops::matmul(w, xs, n_tok, ys, pool, ws);  // warm-up
        const std::size_t before = testing::allocation_count();
        for (int i = 0; i < 3; ++i) ops::matmul(w, xs, n_tok, ys, pool, ws);
        if (n_tok == 1) ops::matvec(w, xs, ys, pool, ws);
        const std::size_t allocated = testing::allocation_count() - before;
        INFO(powerinfer2::io::ggml_type_name(type) << (w.layout == ops::WeightLayout::rows16 ? " rows16, " : ", ")
                                                   << n_tok << " tokens");
        CHECK(allocated == 0);
      }
    }
  }
}

TEST_CASE("powerinfer2 ops: a workspace too small for the product is a bug caught by PWPI_CHECK", "[unit]") {
  common::ThreadPool pool(2);
  const TestMatrix m = make_matrix(GgmlType::Q8_0, 4, 128, 1);
  std::vector<float> x(8 * 128, 1.0f), y(8 * 4);
  ops::Workspace small(4, 128, 2);
  CHECK_THROWS_AS(ops::matmul(m.view(), x, 8, y, pool, small), common::InternalError);
  ops::Workspace narrow(8, 64, 2);
  CHECK_THROWS_AS(ops::matmul(m.view(), x, 8, y, pool, narrow), common::InternalError);
  ops::Workspace ok(8, 128, 2);
  CHECK_NOTHROW(ops::matmul(m.view(), x, 8, y, pool, ok));
  std::vector<float> wrong(5);
  CHECK_THROWS_AS(ops::matmul(m.view(), x, 8, wrong, pool, ok), common::InternalError);
}
