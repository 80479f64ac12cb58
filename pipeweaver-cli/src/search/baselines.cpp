#include "search/baselines.hpp"

#include <algorithm>
#include <cmath>

#include "common/errors.hpp"
#include "search/packing.hpp"
#include "search/partition.hpp"

namespace pipeweaver::search {

BaselinePlan plan_baselines(const spec::ModelSpec& model, const spec::ClusterSpec& cluster,
                            const cost::Device& device, const cost::CostOptions& options,
                            std::span<const spec::Batch> trace, std::int32_t v, std::int64_t token_budget) {
  BaselinePlan plan;
  const auto p = static_cast<std::int32_t>(cluster.pipeline_size);
  plan.n_ranks = p;
  plan.interleaved_chunks_per_rank = v;
  const std::vector<int> order = default_module_order(model);
  const std::vector<ModuleWeights> w = module_weights(model, device, options, trace, order);
  plan.one_per_rank = balanced_partition(model, w, chunk_counts(model, w, p));
  place(plan.one_per_rank, p, Placement::looped);
  plan.interleaved = balanced_partition(model, w, chunk_counts(model, w, p * v));
  place(plan.interleaved, p, Placement::looped);
  if (token_budget <= 0) {
    double tokens = 0;
    for (const spec::Batch& b : trace)
      for (const spec::Sample& s : b.samples) tokens += static_cast<double>(model.llm_tokens(s));
    const double per_batch = trace.empty() ? 0.0 : tokens / static_cast<double>(trace.size());
    const auto raw = static_cast<std::int64_t>(std::ceil(per_batch / (4.0 * p)));
    token_budget = std::max<std::int64_t>(64, (raw + 63) / 64 * 64);
  }
  plan.token_budget = token_budget;
  return plan;
}

std::vector<const schedule::GeneratorInfo*> baseline_generators() {
  std::vector<const schedule::GeneratorInfo*> out;
  for (const char* name : {"gpipe", "1f1b", "interleaved-1f1b", "zb-h1"})
    if (const auto* g = schedule::find_generator(name)) out.push_back(g);
  return out;
}

std::vector<std::vector<std::int32_t>> baseline_packing(const BaselinePlan& plan, const spec::ModelSpec& model,
                                                        const spec::Batch& batch, bool multiple_of_ranks) {
  std::vector<std::vector<std::int32_t>> mbs = pack_token_budget(model, batch, plan.token_budget);
  if (multiple_of_ranks) make_count_multiple(mbs, model, batch, plan.n_ranks);
  return mbs;
}

schedule::Schedule baseline_schedule(const BaselinePlan& plan, const schedule::GeneratorInfo& gen,
                                     const spec::ModelSpec& model, const spec::Batch& batch,
                                     std::int32_t microbatches) {
  if (microbatches > 0 && gen.interleaved && microbatches % plan.n_ranks != 0)
    throw common::SettingError("microbatches",
                               std::to_string(microbatches) + ": " + gen.name + " needs a multiple of the " +
                                   std::to_string(plan.n_ranks) + " ranks",
                               "use a multiple of " + std::to_string(plan.n_ranks));
  std::vector<std::vector<std::int32_t>> packing = microbatches > 0
                                                       ? pack_contiguous(model, batch, microbatches)
                                                       : baseline_packing(plan, model, batch, gen.interleaved);
  const auto m = static_cast<std::int32_t>(packing.size());
  if (gen.interleaved && m % plan.n_ranks != 0)
    throw common::UsageError("batch " + std::to_string(batch.index) + " has too few samples (" +
                                 std::to_string(batch.samples.size()) + ") for " + gen.name + " on " +
                                 std::to_string(plan.n_ranks) + " ranks",
                             "interleaved 1F1B needs a multiple of the ranks' count of microbatches");
  schedule::Schedule s = gen.make(plan.n_ranks, m, gen.interleaved ? plan.interleaved : plan.one_per_rank);
  s.microbatch_samples = std::move(packing);
  return s;
}

}  // namespace pipeweaver::search
