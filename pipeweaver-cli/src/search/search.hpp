// PipeWeaver's per-batch schedule search. For each batch, top-down through a hierarchical
// space, every candidate scored by the cost model + SEMU:
//   1. modality-module ranking: the order of the encoders' chunks before the LLM's;
//   2. stage interleaving: how many chunks in all (p .. max_chunks_per_rank x p), how many per
//      module (in proportion to the module's time on THIS batch), their placement on the
//      ranks (looped or V-shaped, each also re-balanced per rank by balance_ranks so that the
//      rank holding the LM head holds fewer layers), and the order of passes (the weaver:
//      backward split into I + W or not, breadth- or depth-first forwards), on
//      compute-balanced microbatches in several orders;
//   3. tuning: from the best few, move layers between chunks of a module off the busiest
//      ranks, and switch activation recomputation on for single chunks of the ranks nearest
//      their memory capacity (off where memory is left), while SEMU's step time improves.
// Candidates whose peak memory exceeds a rank's capacity are rejected (recomputation of the
// encoders or of everything is tried when nothing fits without it; tuning then trims it to
// the chunks that need it). The baselines are candidates too, so the result is never worse
// than the best of them; a change of layer placement from the previous batch is charged
// the time to move those layers' weights and optimizer state.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "cost/cost_model.hpp"
#include "cost/device_profile.hpp"
#include "schedule/schedule.hpp"
#include "search/baselines.hpp"
#include "semu/semu.hpp"
#include "spec/cluster.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::search {

struct SearchOptions {
  std::int32_t threads = 1;
  double time_budget_ms = 1000;  // per batch; checked between rounds of candidates
  std::int32_t max_chunks_per_rank = 4;
  std::int32_t tune_rounds = 24;  // layer-tuning moves at most
  bool allow_recompute = true;
  bool charge_switch = true;
  std::int32_t baseline_chunks_per_rank = 2;
  std::int64_t token_budget = 0;  // 0 = automatic (see plan_baselines)
};

/// Activation recomputation (Megatron-LM's full granularity) in a schedule: which chunks
/// carry schedule::Chunk::recompute.
enum class Recompute : std::uint8_t {
  none,
  encoders,   // exactly the encoders' chunks (what users switch on for video)
  all,        // every chunk
  selective,  // some other set: the search's per-chunk choice where memory is tight
};
const char* to_string(Recompute r);  // "none", "encoders", "all", "selective"
/// Sets every chunk's flag for `r` (none, encoders or all).
void set_recompute(std::vector<schedule::Chunk>& chunks, const spec::ModelSpec& model, Recompute r);
/// Which of the four the chunks' flags are.
Recompute recompute_of(std::span<const schedule::Chunk> chunks, const spec::ModelSpec& model);

/// One scored schedule.
struct Evaluated {
  std::string method;  // "pipeweaver", "gpipe", "1f1b", ...
  std::string detail;  // how it was built, one line
  schedule::Schedule schedule;
  Recompute recompute = Recompute::none;  // of schedule.chunks
  semu::Result result;  // no timeline
  std::vector<std::int64_t> stage_act_bytes;  // [stage] the most activation bytes one microbatch keeps
  std::int64_t switch_ns = 0;
  bool fits() const { return !result.exceeds_memory; }
  std::int64_t score_ns() const { return result.step_ns + switch_ns; }
};

struct BatchResult {
  std::int64_t batch = 0;
  std::vector<Evaluated> baselines;  // in baseline_generators() order
  Evaluated best;                    // PipeWeaver's pick
  std::size_t best_baseline = 0;     // index of the fastest baseline that fits (else the fastest)
  double search_ms = 0;
  std::int64_t candidates = 0;
  bool budget_hit = false;
};

struct SearchStats {
  std::int64_t candidates = 0;
  double eval_seconds = 0;  // wall time spent evaluating candidates
  std::int64_t chunk_lookups = 0, chunk_hits = 0;
  double hit_rate() const { return chunk_lookups ? static_cast<double>(chunk_hits) / static_cast<double>(chunk_lookups) : 0.0; }
};

class Searcher {
 public:
  Searcher(const spec::ModelSpec& model, const spec::ClusterSpec& cluster, cost::CostOptions options,
           const cost::DeviceProfile* profile, std::span<const spec::Batch> trace, SearchOptions search);
  ~Searcher();
  Searcher(const Searcher&) = delete;
  Searcher& operator=(const Searcher&) = delete;

  /// Searches one batch. Call in trace order: the previous batch's pick decides what a
  /// partition change costs.
  BatchResult search(const spec::Batch& batch);

  /// Re-plays `e` on `batch` with the timeline recorded (for reports and Chrome traces).
  semu::Result replay(const Evaluated& e, const spec::Batch& batch);
  /// The costs SEMU used for `e` (for Chrome traces).
  cost::StepCosts costs_of(const Evaluated& e, const spec::Batch& batch);

  const BaselinePlan& plan() const { return plan_; }
  SearchStats stats() const;

  /// Time to move the layers whose rank differs between `from` and `to` (weights plus
  /// optimizer state over the links between their ranks; all ranks in parallel).
  std::int64_t switch_ns(const std::vector<schedule::Chunk>& from, const std::vector<schedule::Chunk>& to) const;

 private:
  struct Worker;
  struct Candidate;
  struct Level;
  using Packing = std::vector<std::vector<std::int32_t>>;  // [microbatch] -> samples
  std::vector<Evaluated> evaluate_all(std::vector<Candidate>& cands, const spec::Batch& batch);
  Evaluated evaluate(Worker& w, Candidate& c, const spec::Batch& batch);
  // The levels of search(), in order.
  void score_baselines(const spec::Batch& batch, BatchResult& out);
  Level score_layouts(std::vector<Candidate> layouts, const std::vector<Packing>& packings, const spec::Batch& batch);
  void vary_orders(Level& lv, const std::vector<Packing>& packings, const spec::Batch& batch);
  std::vector<Evaluated> tune(const Level& lv, const spec::Batch& batch, const common::Stopwatch& watch,
                              bool& budget_hit);
  std::vector<Candidate> tuning_moves(const Candidate& seed, const Evaluated& eval) const;

  const spec::ModelSpec& model_;
  const spec::ClusterSpec& cluster_;
  cost::CostOptions options_;
  const cost::DeviceProfile* profile_;
  SearchOptions opt_;
  BaselinePlan plan_;
  common::ThreadPool pool_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<schedule::Chunk> previous_;  // the layout chosen for the previous batch
  SearchStats stats_;
};

}  // namespace pipeweaver::search
