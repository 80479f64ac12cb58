#include "engine/sampler.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"

namespace powerinfer2::engine {

std::uint64_t Rng::next_u64() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

model::TokenId argmax(std::span<const float> logits) {
  PWPI_CHECK(!logits.empty());
  std::size_t best = 0;
  for (std::size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;
  return static_cast<model::TokenId>(best);
}

Sampler::Sampler(SamplerParams params, std::size_t vocab) : params_(params), rng_(params.seed), cand_(vocab) {}

model::TokenId Sampler::sample(std::span<const float> logits) {
  PWPI_CHECK(logits.size() == cand_.size());
  if (params_.temperature <= 0.0f) return argmax(logits);
  const std::size_t n = logits.size();
  for (std::size_t i = 0; i < n; ++i) cand_[i] = {logits[i], static_cast<model::TokenId>(i)};
  // Descending logit, ties by id: the order never depends on the sort's stability.
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  std::size_t k = n;
  if (params_.top_k > 0 && static_cast<std::size_t>(params_.top_k) < n) k = static_cast<std::size_t>(params_.top_k);
  std::partial_sort(cand_.begin(), cand_.begin() + static_cast<std::ptrdiff_t>(k), cand_.end(), by_logit);

  const float max_logit = cand_[0].first;
  double sum = 0.0;
  for (std::size_t i = 0; i < k; ++i) {
    cand_[i].first = std::exp((cand_[i].first - max_logit) / params_.temperature);
    sum += cand_[i].first;
  }
  for (std::size_t i = 0; i < k; ++i) cand_[i].first = static_cast<float>(cand_[i].first / sum);
  // Nucleus: the smallest prefix whose probability reaches top_p (at least one token).
  std::size_t kept = k;
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    for (std::size_t i = 0; i < k; ++i) {
      cum += cand_[i].first;
      if (cum >= params_.top_p) {
        kept = i + 1;
        break;
      }
    }
  }
  double total = 0.0;
  for (std::size_t i = 0; i < kept; ++i) total += cand_[i].first;
  for (std::size_t i = 0; i < kept; ++i) cand_[i].first = static_cast<float>(cand_[i].first / total);
  n_kept_ = kept;

  const float r = rng_.next_float();
  float acc = 0.0f;
  for (std::size_t i = 0; i < kept; ++i) {
    acc += cand_[i].first;
    if (r < acc) return cand_[i].second;
  }
  return cand_[kept - 1].second;  // rounding left r above the last partial sum
}

}  // namespace powerinfer2::engine
