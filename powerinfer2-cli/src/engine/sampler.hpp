// Choosing the next token from logits: greedy (temperature 0) or sampling with temperature,
// top-k and top-p (nucleus), llama.cpp's order (top-k, then softmax with temperature, then
// top-p). The random generator is the sampler's own (splitmix64), so a seed gives the same
// tokens on every platform and standard library.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

#include "model/tokenizer.hpp"

namespace powerinfer2::engine {

struct SamplerParams {
  float temperature = 0.8f;  // <= 0: greedy
  int top_k = 40;            // <= 0 or >= vocab: all tokens
  float top_p = 0.95f;       // >= 1: off
  std::uint64_t seed = 42;
};

/// splitmix64 (Steele et al.), uniform floats from its top 24 bits.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next_u64();
  /// Uniform in [0, 1).
  float next_float() { return static_cast<float>(next_u64() >> 40) * 0x1.0p-24f; }

 private:
  std::uint64_t state_;
};

class Sampler {
 public:
  /// Scratch for a vocabulary of `vocab` tokens is allocated here, once.
  Sampler(SamplerParams params, std::size_t vocab);
  const SamplerParams& params() const { return params_; }

  /// The next token. Greedy: the first index of the largest logit.
  model::TokenId sample(std::span<const float> logits);

  /// The candidates kept by the last non-greedy sample() with their probabilities
  /// (renormalised), most likely first. For tests.
  std::span<const std::pair<float, model::TokenId>> last_candidates() const { return {cand_.data(), n_kept_}; }

 private:
  SamplerParams params_;
  Rng rng_;
  std::vector<std::pair<float, model::TokenId>> cand_;  // (logit, then probability; id)
  std::size_t n_kept_ = 0;
};

/// Index of the largest value (the first one on ties).
model::TokenId argmax(std::span<const float> logits);

}  // namespace powerinfer2::engine
