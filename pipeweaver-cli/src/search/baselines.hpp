// The baselines as a careful user runs them: one static layer partition for the whole
// trace, balanced on the trace's average batch (encoders first, then the LLM, each
// module's layers cut so the chunks' times are as equal as the layer granularity allows),
// and samples packed in order into microbatches up to a fixed LLM-token budget chosen once
// for the trace. Every method is then scored by the same cost model and SEMU as the search.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "cost/cost_model.hpp"
#include "schedule/generators.hpp"
#include "schedule/schedule.hpp"
#include "spec/cluster.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::search {

struct BaselinePlan {
  std::int32_t n_ranks = 0;
  std::int64_t token_budget = 0;              // LLM tokens per microbatch
  std::int32_t interleaved_chunks_per_rank = 2;
  std::vector<schedule::Chunk> one_per_rank;  // p chunks, chunk s on rank s
  std::vector<schedule::Chunk> interleaved;   // v p chunks, chunk s on rank s mod p
};

/// The static setup. token_budget 0 = the trace's mean LLM tokens per batch / (4 p),
/// rounded up to a multiple of 64 (about 4 p microbatches per batch, Megatron's usual
/// m >= 4p). Throws UsageError when the model cannot be cut into that many chunks.
BaselinePlan plan_baselines(const spec::ModelSpec& model, const spec::ClusterSpec& cluster,
                            const cost::Device& device, const cost::CostOptions& options,
                            std::span<const spec::Batch> trace, std::int32_t interleaved_chunks_per_rank,
                            std::int64_t token_budget);

/// The baseline generators in report order: gpipe, 1f1b, interleaved-1f1b, zb-h1 (those
/// registered).
std::vector<const schedule::GeneratorInfo*> baseline_generators();

/// Token-budget packing; for an interleaved generator the microbatch count is then made a
/// multiple of p (as Megatron-LM requires) by make_count_multiple.
std::vector<std::vector<std::int32_t>> baseline_packing(const BaselinePlan& plan, const spec::ModelSpec& model,
                                                        const spec::Batch& batch, bool multiple_of_ranks);

/// The baseline schedule of `gen` for `batch`: the plan's static partition (one chunk per
/// rank, or the interleaved one) and baseline_packing, or with `microbatches` > 0 that many
/// microbatches of about equal LLM tokens (pack_contiguous). Validated by the generator's
/// tests; microbatch_samples set. UsageError when an interleaved generator cannot get a
/// multiple of the ranks' count of microbatches.
schedule::Schedule baseline_schedule(const BaselinePlan& plan, const schedule::GeneratorInfo& gen,
                                     const spec::ModelSpec& model, const spec::Batch& batch,
                                     std::int32_t microbatches = 0);

}  // namespace pipeweaver::search
