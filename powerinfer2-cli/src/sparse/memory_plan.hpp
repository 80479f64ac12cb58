// The memory plan of a converted sparse model: how a budget splits into the fixed segment
// (what the engine holds whatever the budget: weights other than the FFN, the forward pass's
// state, the sparse engine's run buffers), the stream buffer (one layer's FFN read but not
// kept) and the neuron cache (hot segment: the most frequently active clusters; cold
// segment: an LRU of cluster slots). The one place a budget is resolved and checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "model/model.hpp"
#include "model/pi2_model.hpp"

namespace powerinfer2::sparse {

/// The memory a run may take: a total in bytes, or the share of the FFN weights left on
/// storage (everything else resident); neither: unlimited. At most one is set.
struct MemoryBudget {
  std::optional<std::uint64_t> bytes;
  std::optional<double> offload_ffn;  // in [0, 1]
  bool limited() const { return bytes.has_value() || offload_ffn.has_value(); }
};

/// The bytes the process holds whatever the budget: the program itself, then what the engine
/// allocates, each the size its owner allocates.
struct FixedSegment {
  std::uint64_t program = 0;         // resident before the engine: code, libraries, runtime
  std::uint64_t weights = 0;         // model::Model::resident_weight_bytes: every non-FFN tensor
  std::uint64_t forward_state = 0;   // model::Forward::state_bytes: KV cache, activations, workspace
  std::uint64_t sparse_buffers = 0;  // SparseFfn's run buffers (predictor workspace included)
  std::uint64_t total() const { return program + weights + forward_state + sparse_buffers; }
};

/// The fixed segment of `model` (a converted model): `program_bytes` (the process's resident
/// set before the engine was built), its weights, its forward state and the sparse engine's
/// run buffers.
FixedSegment fixed_segment(const model::Model& model, std::uint64_t program_bytes, std::uint64_t forward_state_bytes,
                           std::uint64_t sparse_buffer_bytes);

/// How the neuron cache is laid out (SparseOptions' ablation switches).
struct CacheLayout {
  bool segmented = true;   // hot segment by activation frequency + cold LRU (false: one LRU)
  bool cold_cache = true;  // false: nothing but the hot segment stays (read every token)
  double hot_share = -1.0;  // of the cache for the hot segment (SparseOptions::hot_share)
};

/// How the budget is spent (bytes).
struct MemoryPlan {
  std::uint64_t budget = 0;       // 0: unlimited
  std::uint64_t fixed = 0;        // FixedSegment::total
  std::uint64_t stream = 0;       // one layer's FFN: clusters read but not cached
  std::uint64_t hot = 0, cold = 0;
  std::uint64_t ffn_total = 0;
  std::uint64_t gpu = 0;           // clusters on the GPU (not in host memory)
  std::size_t hot_clusters = 0, cold_slots = 0, total_clusters = 0, gpu_clusters = 0;
  double offloaded_fraction() const {
    return ffn_total == 0 ? 0.0 : 1.0 - static_cast<double>(hot + cold + gpu) / static_cast<double>(ffn_total);
  }
};

/// The budget in bytes (0: unlimited); an FFN offload share becomes everything resident but
/// that share of the FFN, with one layer's stream buffer. UsageError when both are given or
/// the share is outside [0, 1].
std::uint64_t budget_bytes(const MemoryBudget& b, const model::Pi2Model& m, std::uint64_t fixed_bytes);

/// The budget split for a model, `gpu_clusters` of whose clusters live on the GPU; UsageError
/// with the numbers when the fixed segment and the stream buffer do not fit.
MemoryPlan plan_memory(const model::Pi2Model& m, std::uint64_t fixed_bytes, const MemoryBudget& budget,
                       const CacheLayout& layout, std::size_t gpu_clusters = 0);

}  // namespace powerinfer2::sparse
