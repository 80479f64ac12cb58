// The cost model: how long each pass of each chunk takes on one microbatch, how many bytes
// it keeps alive, what each rank holds statically, and how long a stage boundary's
// transfer takes. Formulas and their sources: docs/pipeweaver.md ("Cost model").
//
// - Time: every GEMM is a roofline, max(FLOPs / (peak x efficiency), bytes / HBM bandwidth);
//   attention is costed per packed sequence (its quadratic term); elementwise work (norms,
//   residuals, activations, the loss) is memory-bound. Forward F; backward split into the
//   input gradient I (dX = dY W^T, attention backward 2.5x forward, elementwise) and the
//   weight gradient W (dW = X^T dY); B = I + W.
// - A chunk is a layer range of one module. An encoder chunk runs its microbatch's encoder
//   sequences of that module; an LLM chunk its packed LLM tokens (one sequence per sample:
//   per-sample attention masks). A projector either has a chunk of its own or is folded into
//   the chunk holding its encoder's last layer.
// - Every time is rounded to integer nanoseconds per layer and per extra (embedding, head),
//   and a chunk's time is their integer sum, so reuse (costing one layer for n identical
//   ones, one microbatch for identical ones) reproduces the un-reused sum exactly.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "cost/device_profile.hpp"
#include "cost/step_costs.hpp"
#include "schedule/schedule.hpp"
#include "spec/cluster.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::cost {

struct CostOptions {
  bool flash_attention = true;            // scores are not stored (FlashAttention); else 2-5 bytes per score
  bool dropout = false;                   // dropout masks kept (Korthikanti's 34sh + 5as^2 counts them)
  double attention_backward_ratio = 2.5;  // attention backward FLOPs / forward (FlashAttention-2)
  std::int64_t grad_bytes_per_param = 4;  // fp32 gradient accumulation (Megatron's default); 2 for bf16
  std::int64_t optimizer_bytes_per_param = 12;  // Adam: fp32 master weights, m, v
  bool zero1 = false;                     // shard optimizer state over data-parallel replicas
  // Full activation recomputation of transformer layers (Megatron-LM's --recompute-granularity
  // full, one layer per group): F keeps only each layer's input; the backward reruns the
  // layer's forward first (I grows by F); W still reads the recomputed GEMM inputs. These
  // apply to every chunk; a schedule's chunk can also ask for it alone (Chunk::recompute).
  bool recompute = false;
  bool recompute_encoders = false;  // the same for the encoders' layers only (their activations are the big ones on video)
};

/// The device as the cost model sees it: peak, bandwidth, efficiencies (constant or curves).
struct Device {
  double peak_flops = 0;
  double hbm_bytes_per_s = 0;
  double gemm_efficiency = 0.6;
  double attention_efficiency = 0.45;
  const DeviceProfile* profile = nullptr;  // when set, its curves replace the constants

  static Device from(const spec::DeviceSpec& spec, const DeviceProfile* profile = nullptr);
  double gemm_eff(double flops) const { return profile ? profile->gemm.at(flops) : gemm_efficiency; }
  double attention_eff(double flops) const { return profile ? profile->attention.at(flops) : attention_efficiency; }
};

/// One GEMM [m, k] x [k, n] with `dtype_bytes` operands: max(2mnk / (peak eff), bytes / bw), in ns.
double gemm_ns(const Device& d, double m, double n, double k, double dtype_bytes);
/// Memory-bound work moving `bytes`, in ns.
double memory_ns(const Device& d, double bytes);
/// A point-to-point message: latency + bytes / bandwidth, rounded to ns.
std::int64_t p2p_ns(const spec::LinkSpec& link, std::int64_t bytes);
/// Rounds to the nearest integer, halves away from zero: std::llround, without a libm call.
inline std::int64_t round_ns(double ns) {
  const double whole = std::trunc(ns);
  const double frac = ns - whole;  // exact
  return static_cast<std::int64_t>(whole) + (frac >= 0.5 ? 1 : frac <= -0.5 ? -1 : 0);
}

/// The work one microbatch gives one module: its sequences as (length, count), sorted by
/// length. For a projector, one entry (tokens, 1): it has no attention.
struct ModuleLoad {
  std::vector<std::pair<std::int64_t, std::int64_t>> seqs;
  std::int64_t tokens = 0;
  friend bool operator==(const ModuleLoad&, const ModuleLoad&) = default;
};

/// [module index] -> load, for the samples `samples` of `batch`.
std::vector<ModuleLoad> microbatch_loads(const spec::ModelSpec& model, const spec::Batch& batch,
                                         std::span<const std::int32_t> samples);
/// The same into `loads`, reusing its storage (resized to the module count).
void microbatch_loads(const spec::ModelSpec& model, const spec::Batch& batch, std::span<const std::int32_t> samples,
                      std::vector<ModuleLoad>& loads);

/// Times (ns) and saved-activation bytes of one pass set.
struct PassCost {
  std::int64_t f_ns = 0, i_ns = 0, w_ns = 0;
  std::int64_t act_bytes = 0;    // kept from F until the backward
  std::int64_t act_w_bytes = 0;  // the part W still reads after I (the GEMM inputs)
  PassCost& operator+=(const PassCost& o);
  PassCost scaled(std::int64_t n) const;
  friend bool operator==(const PassCost&, const PassCost&) = default;
};

/// One transformer layer (encoder or LLM), or a whole projector MLP, on `load`.
PassCost layer_cost(const Device& d, const spec::Module& m, const ModuleLoad& load, std::int64_t dtype_bytes,
                    const CostOptions& o);
/// What sits outside the layers: the encoder's patch embedding / mel convolutions (first),
/// the LLM's token embedding (first) and final norm + LM head + loss (last).
PassCost extras_cost(const Device& d, const spec::Module& m, const ModuleLoad& load, std::int64_t dtype_bytes,
                     bool first, bool last);
/// Saved activation bytes per token of one transformer layer, without the score term.
std::int64_t layer_act_bytes_per_token(const spec::LayerShape& l, std::int64_t dtype_bytes, const CostOptions& o);
/// Saved bytes of the attention scores for one sequence of `seq_len` tokens (0 with flash
/// attention, which keeps only the fp32 log-sum-exp per head and token).
std::int64_t score_act_bytes(const spec::LayerShape& l, std::int64_t seq_len, const CostOptions& o);

/// How a schedule's chunks map onto the model: per stage, the module, its layer count, which
/// ends of the module it holds, the projectors folded into it, and what crosses the
/// boundary to the next stage.
struct ChunkInfo {
  int module = -1;
  std::int32_t n_layers = 0;
  bool first = false, last = false;  // holds the module's first / last layer
  bool recompute = false;            // the chunk's own recomputation flag (schedule::Chunk)
  std::vector<int> folded_projectors;
  std::int32_t rank = 0;
  // Tensors crossing to stage + 1 (and their gradients back): (module whose tokens, width).
  std::vector<std::pair<int, std::int64_t>> carry;
  std::int64_t params = 0;  // parameters held by this chunk
};

/// The projectors fed by encoder `e` (through any modality), each once.
std::vector<int> projectors_of(const spec::ModelSpec& model, int e);

/// Resolves and checks a schedule against a model: every module named exists, each encoder
/// and the LLM is tiled exactly once in order, a projector has one chunk or none (then it
/// is folded into its encoder's last chunk), encoders and projectors come before the LLM.
/// Errors are InputError at `where` (the schedule file) with the chunk's JSON pointer.
std::vector<ChunkInfo> resolve_chunks(const spec::ModelSpec& model, const schedule::Schedule& s,
                                      const common::Where& where, const std::string& model_file);

/// Parameters -> bytes per rank (weights + gradients + optimizer state).
std::int64_t static_bytes(std::int64_t params, std::int64_t dtype_bytes, std::int64_t data_parallel,
                          const CostOptions& o);

struct ReuseStats {
  std::int64_t chunk_lookups = 0, chunk_hits = 0;
  std::int64_t spatial_hits = 0;   // hits on a key first costed in the same microbatch (another stage)
  std::int64_t temporal_hits = 0;  // hits on a key first costed for another microbatch or batch
  std::int64_t layers_costed = 0;  // layer evaluations actually performed
  double hit_rate() const { return chunk_lookups ? static_cast<double>(chunk_hits) / static_cast<double>(chunk_lookups) : 0.0; }
};

/// Costs schedules batch after batch, reusing identical work through a cache keyed by the
/// canonical signature of a module's work in a microbatch: (module, its sequence-length
/// multiset). An entry holds one layer's cost and the extras per pair of module ends, so a
/// chunk costs n x layer + extras + folded projectors' layers, all from the cache. Not
/// thread-safe; one per thread.
class CostModel {
 public:
  CostModel(const spec::ModelSpec& model, const spec::ClusterSpec& cluster, CostOptions options = {},
            const DeviceProfile* profile = nullptr);
  CostModel(const CostModel&) = delete;
  CostModel& operator=(const CostModel&) = delete;

  void set_reuse(bool on) { reuse_ = on; }
  bool reuse() const { return reuse_; }
  const ReuseStats& stats() const { return stats_; }
  void clear_cache();
  const Device& device() const { return device_; }
  const CostOptions& options() const { return options_; }

  /// The costs of every pass of `s` on `batch`. `chunks` from resolve_chunks(s); the
  /// microbatches are s.microbatch_samples (which must be set).
  StepCosts step_costs(const schedule::Schedule& s, std::span<const ChunkInfo> chunks, const spec::Batch& batch);
  /// The same into `costs`, reusing its storage (every entry is written).
  void step_costs(const schedule::Schedule& s, std::span<const ChunkInfo> chunks, const spec::Batch& batch,
                  StepCosts& costs);

 private:
  struct LoadHash {
    std::size_t operator()(const ModuleLoad& l) const;
  };
  // What one module costs on one load: a layer, and what sits outside the layers for each
  // (first, last) pair of module ends. Costed when first needed.
  struct LoadEntry {
    PassCost layer;
    PassCost layer_recomputed;  // the same layer with activation recomputation
    std::array<PassCost, 4> extras{};  // [first | last << 1]
    std::uint8_t known = 0;            // bit 0: layer; bit 1 + e: extras[e]; bit 5: layer_recomputed
    std::int64_t first_use = 0;        // the microbatch serial number that created it
  };
  // One step_costs() call's layout: stages grouped by chunk shape, stage boundaries that
  // cross ranks grouped by (links, what crosses); without reuse each is its own group.
  struct Plan {
    std::vector<std::int32_t> shape_of;        // [stage] -> shape
    std::vector<std::int32_t> shape_rep;       // [shape] -> a stage of that shape
    std::vector<std::int32_t> boundary_class;  // [stage] -> class of boundary stage | stage + 1; -1: none
    std::vector<std::int32_t> class_rep;       // [class] -> a boundary stage of that class
    std::vector<PassCost> shape_cost;                 // [microbatch, shape]
    std::vector<std::int64_t> class_f_ns, class_b_ns; // [microbatch, class]
    std::vector<ModuleLoad> loads;    // [module] this microbatch's
    std::vector<LoadEntry*> entries;  // [module] their cache entries
  };
  void make_plan(std::span<const ChunkInfo> chunks, std::int32_t n_microbatches);
  PassCost chunk_cost_fresh(const ChunkInfo& c, const std::vector<ModuleLoad>& loads);
  PassCost chunk_cost_reused(const ChunkInfo& c);
  std::int64_t boundary_bytes(const ChunkInfo& c, const std::vector<ModuleLoad>& loads) const;

  const spec::ModelSpec& model_;
  const spec::ClusterSpec& cluster_;
  CostOptions options_;
  CostOptions recomputing_;  // options_ with recompute set, for chunks that ask for it
  Device device_;
  bool reuse_ = true;
  ReuseStats stats_;
  std::vector<std::unordered_map<ModuleLoad, LoadEntry, LoadHash>> load_cache_;  // [module]
  std::size_t cached_loads_ = 0;
  std::int64_t mb_serial_ = 0;
  Plan plan_;
};

}  // namespace pipeweaver::cost
