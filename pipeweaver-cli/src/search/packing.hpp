// Packing: which samples of a batch go into which microbatch, and in what order the
// microbatches run. A packing is [microbatch] -> sample indices into Batch::samples.
// The baselines pack in order up to a token budget (what a user's packer does); the search
// balances every module's forward FLOPs over the microbatches.
#pragma once

#include <cstdint>
#include <vector>

#include "common/errors.hpp"
#include "schedule/schedule.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::search {

/// Samples packed in order into microbatches of at most `token_budget` LLM tokens (a sample
/// longer than the budget gets a microbatch of its own): what a user's packer does.
std::vector<std::vector<std::int32_t>> pack_token_budget(const spec::ModelSpec& model, const spec::Batch& batch,
                                                         std::int64_t token_budget);

/// Samples split in order into exactly `n` non-empty microbatches of about equal LLM tokens.
/// UsageError when the batch has fewer than n samples.
std::vector<std::vector<std::int32_t>> pack_contiguous(const spec::ModelSpec& model, const spec::Batch& batch,
                                                       std::int32_t n);

/// Samples into exactly `m` non-empty microbatches balancing every module's forward FLOPs
/// at once (or, `total_only`, their sum): largest sample first into the microbatch whose
/// most loaded module stays lowest relative to its share. UsageError when the batch has
/// fewer than m samples.
std::vector<std::vector<std::int32_t>> pack_balanced(const spec::ModelSpec& model, const spec::Batch& batch,
                                                     std::int32_t m, bool total_only = false);

/// The microbatches of `packing` reordered by their forward FLOPs (all modules summed),
/// heaviest or lightest first; equal ones keep their order.
std::vector<std::vector<std::int32_t>> order_by_work(const spec::ModelSpec& model, const spec::Batch& batch,
                                                     std::vector<std::vector<std::int32_t>> packing,
                                                     bool heaviest_first);

/// Makes the microbatch count a multiple of `multiple` (interleaved 1F1B needs one of the
/// ranks): splits the microbatch with the most LLM tokens in two halves of about equal
/// tokens, keeping sample order, or, when no microbatch can be split, merges the lightest
/// neighbouring pair. Leaves the count short when there are fewer microbatches than
/// `multiple` and none can be split (too few samples).
void make_count_multiple(std::vector<std::vector<std::int32_t>>& packing, const spec::ModelSpec& model,
                         const spec::Batch& batch, std::int32_t multiple);

/// A schedule's microbatches for `batch`: its own microbatch_samples, checked to hold every
/// sample exactly once (InputError at `where`, the schedule's file), or when it lists none,
/// the batch split in order into its n_microbatches (pack_contiguous).
void assign_samples(schedule::Schedule& s, const spec::ModelSpec& model, const spec::Batch& batch,
                    const common::Where& where);

}  // namespace pipeweaver::search
