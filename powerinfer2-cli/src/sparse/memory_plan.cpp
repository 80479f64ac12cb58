#include "sparse/memory_plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

#include "common/errors.hpp"

namespace powerinfer2::sparse {

namespace {

std::string mib(std::uint64_t bytes) {
  char s[32];
  std::snprintf(s, sizeof s, "%.1f MiB", static_cast<double>(bytes) / (1024.0 * 1024.0));
  return s;
}

}  // namespace

FixedSegment fixed_segment(const model::Model& model, std::uint64_t program_bytes, std::uint64_t forward_state_bytes,
                           std::uint64_t sparse_buffer_bytes) {
  return {program_bytes, model.resident_weight_bytes(), forward_state_bytes, sparse_buffer_bytes};
}

std::uint64_t budget_bytes(const MemoryBudget& b, const model::Pi2Model& m, std::uint64_t fixed_bytes) {
  if (b.bytes && b.offload_ffn)
    throw common::UsageError("a memory budget and an FFN offload share were both given", "give one of them");
  if (b.bytes) return *b.bytes;
  if (!b.offload_ffn) return 0;
  const double offload = *b.offload_ffn;
  if (!(offload >= 0.0 && offload <= 1.0))
    throw common::UsageError("the FFN offload share must be in [0, 1], got " + std::to_string(offload));
  const std::uint64_t ffn = m.ffn_bytes();
  if (offload == 0.0) return fixed_bytes + ffn;
  const auto resident = static_cast<std::uint64_t>(std::floor(static_cast<double>(ffn) * (1.0 - offload)));
  return fixed_bytes + m.geo.layer_bytes() + resident;  // + the stream buffer
}

MemoryPlan plan_memory(const model::Pi2Model& m, std::uint64_t fixed_bytes, const MemoryBudget& budget,
                       const CacheLayout& layout, std::size_t gpu_clusters) {
  MemoryPlan p;
  p.budget = budget_bytes(budget, m, fixed_bytes);
  p.fixed = fixed_bytes;
  p.ffn_total = m.ffn_bytes();
  p.total_clusters = m.geo.n_clusters() * m.layers.size();
  const std::uint64_t cb = m.geo.cluster_bytes();
  p.gpu_clusters = std::min(gpu_clusters, p.total_clusters);
  p.gpu = p.gpu_clusters * cb;
  const std::size_t cpu_clusters = p.total_clusters - p.gpu_clusters;
  const std::uint64_t cpu_ffn = p.ffn_total - p.gpu;
  if (p.budget == 0 || fixed_bytes + cpu_ffn <= p.budget) {
    p.hot_clusters = cpu_clusters;
    p.hot = cpu_ffn;
    return p;
  }
  p.stream = m.geo.layer_bytes();
  if (fixed_bytes + p.stream > p.budget)
    throw common::SettingError(
        "memory-budget",
        mib(p.budget) + " is too small: the fixed segment needs " + mib(fixed_bytes) +
            " (the program, non-FFN weights, predictors, KV cache, run buffers) and the stream buffer " + mib(p.stream) +
            " (one layer's FFN)",
        "give at least " + mib(fixed_bytes + p.stream) + ", or a shorter context", "ctx-size");
  const std::uint64_t fit = (p.budget - fixed_bytes - p.stream) / cb;
  if (!layout.cold_cache) {
    p.hot_clusters = static_cast<std::size_t>(fit);
  } else if (!layout.segmented) {
    p.cold_slots = static_cast<std::size_t>(fit);
  } else {
    const double share =
        layout.hot_share >= 0.0 ? std::min(layout.hot_share, 1.0) : m.profiled_tokens > 0 ? 1.0 : 0.85;
    p.hot_clusters = static_cast<std::size_t>(static_cast<double>(fit) * share);
    p.cold_slots = static_cast<std::size_t>(fit) - p.hot_clusters;
  }
  p.hot_clusters = std::min(p.hot_clusters, cpu_clusters);
  p.cold_slots = std::min(p.cold_slots, cpu_clusters - p.hot_clusters);
  p.hot = p.hot_clusters * cb;
  p.cold = p.cold_slots * cb;
  return p;
}

}  // namespace powerinfer2::sparse
