// Modality-aware partitioning and compute-balanced packing for the schedule search and for
// the baselines' static partition. Weights are times (ns of F + I + W) from the cost model,
// so a video-heavy batch makes vision layers heavier and the partition follows it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cost/cost_model.hpp"
#include "schedule/schedule.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::search {

/// One module's layers in pipeline order with their weights: w[l] is the time of layer l,
/// its module's extras (embeddings, LM head and loss) added to the first / last layer and
/// the module's projectors folded into its last layer (encoders).
struct ModuleWeights {
  int module = -1;
  std::vector<double> w;
  double total() const;
};

/// The modules in pipeline order `order` (encoders, then the LLM), weighted by their time on
/// `batches` (summed; each batch costed as one load so attention's per-sequence term counts).
std::vector<ModuleWeights> module_weights(const spec::ModelSpec& model, const cost::Device& device,
                                          const cost::CostOptions& options, std::span<const spec::Batch> batches,
                                          const std::vector<int>& order);

/// Encoders in model order, then the LLM: what users lay out.
std::vector<int> default_module_order(const spec::ModelSpec& model);
/// Every order of the encoders (at most 24), the LLM last.
std::vector<std::vector<int>> module_orders(const spec::ModelSpec& model);

/// Chunks per module for `n_chunks` chunks in all: one each, then each further chunk to the
/// module whose chunks are heaviest on average (never more chunks than layers).
/// UsageError when n_chunks is below the number of modules or above the layers.
std::vector<std::int32_t> chunk_counts(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                       std::int32_t n_chunks);

/// Cuts `w` into `k` contiguous non-empty parts minimising the heaviest part (exact DP).
/// Returns the k + 1 boundaries (0 ... w.size()).
std::vector<std::int32_t> split_min_max(std::span<const double> w, std::int32_t k);

/// The chunks (ranks left 0) of a min-max split of every module into counts[j] chunks.
std::vector<schedule::Chunk> balanced_partition(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                                std::span<const std::int32_t> counts);

enum class Placement : std::uint8_t {
  looped,  // stage s on rank s mod p (Megatron-LM)
  vshape,  // zig-zag: down the ranks, back up, down again (ZB-V's placement)
};
/// Sets every chunk's rank.
void place(std::vector<schedule::Chunk>& chunks, std::int32_t n_ranks, Placement placement);

/// Moves one layer from chunk `a` to chunk `b`: every boundary between them shifts by one
/// layer, so the chunks in between keep their sizes. The chunks [a, b] must be consecutive
/// chunks of one module and `a` must hold two layers or more.
void move_layer(std::vector<schedule::Chunk>& chunks, std::size_t a, std::size_t b);

/// Lowers the busiest rank's load (the sum of its chunks' weights) by moving layers between
/// chunks of the same module: a layer leaves one chunk for any other of its module, the
/// chunks in between shifting by one layer and keeping their sizes. Repeats the move that
/// lowers the busiest rank the most (never raising another rank to its old load) until none
/// does. Chunks keep their ranks and order; a chunk that gives away its last layer is
/// dropped (so a rank can shed a module altogether, e.g. the LM head's rank its encoder
/// chunk), but every rank keeps at least one chunk. Deterministic.
void balance_ranks(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                   std::vector<schedule::Chunk>& chunks, std::int32_t n_ranks);

/// Each chunk's weight (sum of its layers' weights).
std::vector<double> chunk_weights(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                  std::span<const schedule::Chunk> chunks);

}  // namespace pipeweaver::search
