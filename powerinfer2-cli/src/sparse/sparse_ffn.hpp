// The sparse FFN engine of a converted model (.pi2.gguf): per layer, the predictor picks
// the neurons a token activates, their clusters come from the segmented neuron cache (hot
// segment: the most frequently active clusters, loaded at start; cold segment: an LRU of
// cluster slots) or are read from storage with O_DIRECT while the compute threads work on
// the clusters already in memory (the neuron-cluster pipeline), and each cluster is
// computed the moment its bytes arrive. Prompts (several tokens) run dense over all neurons,
// streaming what is not resident. Memory: everything is sized once at construction.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/thread_pool.hpp"
#include "io/flash_reader.hpp"
#include "model/forward.hpp"
#include "model/model.hpp"
#include "model/pi2_model.hpp"
#include "ops/cuda/cuda_ops.hpp"
#include "ops/matmul.hpp"
#include "sparse/memory_plan.hpp"

namespace powerinfer2::sparse {

/// Which path a forward pass takes: auto = dense for prompts, sparse for decode (when a
/// predictor or the oracle is available).
enum class EngineMode { automatic, dense, sparse };

struct SparseOptions {
  MemoryBudget budget;  // unlimited: every cluster resident
  EngineMode mode = EngineMode::automatic;
  bool oracle = false;          // exact active sets computed densely from the file (tests)
  bool measure_recall = false;  // also compute the exact sets to measure the predictor's recall
  bool segmented = true;        // hot segment by activation frequency + cold LRU (false: one LRU)
  bool cold_cache = true;       // false: nothing but the hot segment stays (read every token)
  bool pipeline = true;         // false: wait for every read of a layer, then compute
  /// Share of the FFN budget for the hot segment (segmented). < 0: chosen on the fly — 1.0
  /// when the file has an activation profile (pinning the most frequent clusters is the
  /// static optimum when tokens activate neurons independently; `plan` measured it best on the
  /// 7b model), 0.85 without one (hot by index, the LRU adapts).
  double hot_share = -1.0;
  unsigned queue_depth = 64;    // reads in flight
  /// > 0: the most frequently active clusters that fit in this many bytes of GPU memory live
  /// there and are computed there (every token, no prediction), while the CPU computes the rest.
  std::uint64_t gpu_memory_bytes = 0;
  std::optional<io::ReadBackend> backend;  // forced I/O backend
};

struct SparseStats {
  std::uint64_t sparse_tokens = 0, dense_tokens = 0;  // token-layers / n_layer
  std::uint64_t predicted_neurons = 0, active_neurons = 0;  // sparse path: computed, and of those non-zero
  std::uint64_t true_neurons = 0, found_neurons = 0;        // measure_recall: truly active, and predicted
  std::uint64_t hot_hits = 0, cold_hits = 0, misses = 0;    // clusters
  std::uint64_t reads = 0, bytes_read = 0;
  double stall_s = 0.0;  // compute threads waiting for reads (mean over threads)
  double gpu_wait_s = 0.0;  // waiting for the GPU's share after the CPU's was done
  double ffn_s = 0.0;
  std::uint64_t load_bytes = 0;  // the hot segment, read at start
  double load_s = 0.0;
  std::uint64_t gpu_load_bytes = 0;  // the GPU's clusters, read and copied up at start
  double gpu_load_s = 0.0;
};

/// The cache layout of these options.
inline CacheLayout cache_layout(const SparseOptions& o) { return {o.segmented, o.cold_cache, o.hot_share}; }

/// plan_memory with the budget and cache layout of `o`.
inline MemoryPlan plan_memory(const model::Pi2Model& m, std::uint64_t fixed_bytes, const SparseOptions& o,
                              std::size_t gpu_clusters = 0) {
  return plan_memory(m, fixed_bytes, o.budget, cache_layout(o), gpu_clusters);
}

class SparseFfn final : public model::FfnBackend {
 public:
  /// `program_bytes`: the process's resident set before the engine was built (code,
  /// libraries); `forward_state_bytes`: model::Forward::state_bytes of the forward pass it
  /// serves. Sizes its run buffers, plans the budget (the fixed segment: the program, the
  /// model's weights, the forward state and these buffers) and loads the hot segment (timed in
  /// stats().load_s). UsageError with the numbers for a budget that cannot hold the fixed segment.
  SparseFfn(const model::Model& model, common::ThreadPool& pool, const SparseOptions& o, std::uint64_t program_bytes,
            std::uint64_t forward_state_bytes, std::size_t max_batch);
  ~SparseFfn() override;
  SparseFfn(const SparseFfn&) = delete;
  SparseFfn& operator=(const SparseFfn&) = delete;

  void ffn(std::size_t layer, const float* xb, std::size_t n, float* out) override;

  const MemoryPlan& plan() const { return plan_; }
  const FixedSegment& fixed_segment() const { return fixed_; }
  const SparseStats& stats() const { return stats_; }
  void reset_stats();
  std::string io_description() const;
  bool sparse_decode() const;  // decode takes the sparse path

 private:
  struct Item {
    std::uint32_t cluster = 0;
    std::uint32_t first = 0, count = 0;  // active neurons: act_[first, first + count); count 0: all
    const std::uint8_t* data = nullptr;  // the cluster's bytes (set before compute)
    std::int32_t request = -1;           // first of the reads it waits for (-1: resident)
    std::int32_t request_last = -1;      // last of them (a partial cluster may take several)
  };

  void predict(std::size_t layer, const float* xb);
  void exact_active(std::size_t layer, std::vector<std::uint32_t>& out);
  void quantize_inputs(const float* xb, std::size_t n);
  const std::uint8_t* lookup(std::size_t layer, std::uint32_t cluster, bool use_cache, std::uint64_t stamp);
  std::uint8_t* claim_slot(std::size_t layer, std::uint32_t cluster, std::uint64_t stamp);
  void run_items(std::size_t layer, std::size_t n, float* out, bool dense);
  void compute_item(const Item& it, std::size_t n, float* y, std::uint64_t& predicted, std::uint64_t& active) const;
  void load_hot();
  void load_gpu();
  /// Submits `reqs`, waits for all of them; IoError ("<file>: cannot <what>: ...") if one fails.
  /// Bytes of the run buffers as allocated (the fixed segment's share of this engine).
  std::uint64_t run_buffer_bytes() const;
  void read_all(std::vector<io::ReadRequest>& reqs, const char* what);
  /// Every (layer, cluster), most frequently active first (ties: lower cluster, then layer).
  std::vector<std::pair<std::uint32_t, std::uint32_t>> clusters_by_frequency() const;

  const model::Model& model_;
  const model::Pi2Model& pi2_;
  const model::ModelConfig& cfg_;
  model::BundleGeometry geo_;
  common::ThreadPool& pool_;
  SparseOptions opts_;
  FixedSegment fixed_;
  MemoryPlan plan_;
  SparseStats stats_;
  std::unique_ptr<io::FlashReader> reader_;
  std::size_t max_batch_ = 0;

  model::WeightStore hot_store_, cold_store_, stream_store_;
  std::vector<std::vector<const std::uint8_t*>> where_;  // [layer][cluster] -> bytes, nullptr: on storage
  std::vector<std::vector<bool>> hot_;                    // [layer][cluster]
  std::vector<std::vector<bool>> gpu_;                    // [layer][cluster] computed on the GPU
  std::vector<bool> cpu_part_;                            // [layer] some cluster is not on the GPU
  std::unique_ptr<ops::cuda::NeuronFfn> gpu_ffn_;
  // Cold LRU over slots: owner, intrusive list, last-use stamp.
  std::vector<std::int64_t> slot_owner_;  // layer * n_clusters + cluster, -1: free
  std::vector<std::int32_t> lru_prev_, lru_next_;
  std::int32_t lru_head_ = -1, lru_tail_ = -1;
  std::vector<std::uint64_t> slot_stamp_;
  std::uint64_t stamp_ = 0;

  // Per call state, sized once.
  std::vector<Item> items_;
  std::vector<io::ReadRequest> requests_;
  std::unique_ptr<std::atomic<std::uint32_t>[]> flags_;
  std::size_t flags_count_ = 0;
  std::vector<std::uint32_t> act_, truth_;  // active neuron indices of the layer
  std::vector<std::uint32_t> order_;        // items_ in compute order
  std::vector<std::uint8_t> mask_;          // [ffn] exact_active's scratch
  common::AlignedBuffer<float> pred_h_, pred_g_, pred_u_;
  ops::Workspace pred_ws_;
  common::AlignedBuffer<float> xf_;             // [max_batch][dim]
  common::AlignedBuffer<std::int8_t> xq_;       // [max_batch][dim]
  common::AlignedBuffer<float> xd_;             // [max_batch][dim / 32]
  common::AlignedBuffer<std::int32_t> xs_;      // [max_batch][dim / 32]
  common::AlignedBuffer<float> partial_;        // [threads][max_batch][dim]
  std::vector<double> thread_stall_s_;
  std::vector<std::uint64_t> thread_pred_, thread_act_;
};

}  // namespace powerinfer2::sparse
