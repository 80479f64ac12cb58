// Shared by the subcommands that cost and emulate steps (simulate, export, schedule,
// search): the input options, loading, and turning --schedule (a file or a generator name)
// into a schedule per batch. A generator gives the search's baseline (search/baselines.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "cost/cost_model.hpp"
#include "cost/device_profile.hpp"
#include "schedule/generators.hpp"
#include "schedule/schedule.hpp"
#include "search/baselines.hpp"
#include "spec/cluster.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::cli {

struct SimArgs {
  std::string model_path, cluster_path, trace_path, profile_path;
  std::string schedule;            // a schedule JSON file or a generator name
  std::int32_t microbatches = 0;   // generated: > 0 packs the batch into this many microbatches
  std::int32_t chunks_per_rank = 0;  // generated: 0 = 1, or 2 for interleaved generators
  std::int64_t token_budget = 0;   // generated: LLM tokens per microbatch; 0 = the search's default
  bool no_flash = false;
  bool zero1 = false;
};

/// --model --cluster --trace --schedule --microbatches --chunks-per-rank --token-budget
/// --device-profile --no-flash-attention --zero1.
void add_sim_options(CLI::App* cmd, SimArgs& args);

struct SimInputs {
  spec::ModelSpec model;
  spec::ClusterSpec cluster;
  std::vector<spec::Batch> batches;
  std::optional<cost::DeviceProfile> profile;
  cost::CostOptions options;
};
SimInputs load_inputs(const SimArgs& args);

/// A generator's chunks per rank (`chunks_flag`: its name in this command) checked against
/// the generator (UsageError naming the flag). The microbatch count is search::baseline_schedule's
/// to check.
void check_generator_flags(const schedule::GeneratorInfo& gen, const char* chunks_flag, std::int32_t chunks);

/// The baselines' static setup as `search` makes it, for generator `gen`: chunks per rank
/// for interleaved generators (0 = 2), the token budget (0 = automatic).
search::BaselinePlan baseline_plan(const SimInputs& in, const schedule::GeneratorInfo& gen, std::int32_t chunks,
                                   std::int64_t token_budget);

/// How --schedule is turned into a schedule for each batch: a file's schedule (its own
/// microbatches, or the batch split in order into its count), or a generator's baseline
/// exactly as `search` builds it (its static partition and token-budget packing, or
/// --microbatches of about equal LLM tokens).
class ScheduleSource {
 public:
  ScheduleSource(const SimArgs& args, const SimInputs& in);
  /// The schedule for `batch` (validated, microbatches packed) and its resolved chunks.
  schedule::Schedule make(const spec::Batch& batch) const;
  const std::vector<cost::ChunkInfo>& chunks() const { return chunks_; }
  const std::string& label() const { return label_; }
  bool generated() const { return generator_ != nullptr; }

 private:
  const SimArgs& args_;
  const SimInputs& in_;
  const schedule::GeneratorInfo* generator_ = nullptr;
  std::optional<schedule::Schedule> file_schedule_;
  search::BaselinePlan plan_;  // generated
  std::vector<cost::ChunkInfo> chunks_;
  std::string label_;
};

/// --batch I checked against the trace (UsageError naming the valid range).
const spec::Batch& pick_batch(const SimInputs& in, const std::string& trace_path, std::int64_t index);

}  // namespace pipeweaver::cli
