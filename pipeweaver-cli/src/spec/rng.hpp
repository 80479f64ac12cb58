// Reproducible random numbers for trace generation: the same seed gives the same trace on
// every platform and standard library. Hence our own generator (xoshiro256**, seeded by
// splitmix64), our own uniform/normal sampling and our own log/exp built from + - * / only
// (std::normal_distribution and libm differ between implementations). rng.cpp is compiled
// with -ffp-contract=off so no fused multiply-add changes a bit.
#pragma once

#include <array>
#include <cstdint>

namespace pipeweaver::spec {

/// splitmix64 (Steele, Lea, Flood 2014): seeds xoshiro and mixes 64-bit values.
class SplitMix64 {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next();

 private:
  std::uint64_t state_;
};

/// xoshiro256** 1.0 (Blackman, Vigna 2018), state filled from splitmix64(seed) as its
/// authors recommend.
class Rng {
 public:
  explicit Rng(std::uint64_t seed);
  std::uint64_t next();
  /// Uniform in [0, 1) with 53 random bits.
  double uniform01();
  /// Uniform in (0, 1): never 0, for the inverse normal CDF.
  double uniform_open01();
  /// Uniform integer in [lo, hi] (inclusive), unbiased (rejection).
  std::int64_t uniform_int(std::int64_t lo, std::int64_t hi);
  /// Standard normal by inversion of one uniform_open01() (one draw per value).
  double normal();

 private:
  std::array<std::uint64_t, 4> s_;
};

/// Natural logarithm of x > 0 and e^x, reproducible bit for bit (relative error < 1e-15).
double det_log(double x);
double det_exp(double x);
/// Inverse of the standard normal CDF for p in (0, 1): Acklam's rational approximation
/// (relative error < 1.2e-9, ample for sampling).
double normal_quantile(double p);

}  // namespace pipeweaver::spec
