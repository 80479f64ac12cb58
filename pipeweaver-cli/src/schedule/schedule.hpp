// A pipeline schedule for one batch: how the model's layers are cut into chunks (virtual
// stages) and placed on ranks, how samples are packed into microbatches, and per rank the
// ordered actions. Virtual stages form a chain in data-flow order: the forward of stage s
// feeds stage s + 1, the backward of stage s + 1 feeds stage s.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "common/json_io.hpp"
#include "schedule/action.hpp"

namespace pipeweaver::schedule {

/// One virtual stage: layers [layer_begin, layer_end) of a module, run on one rank.
struct Chunk {
  std::string module;
  std::int32_t layer_begin = 0;
  std::int32_t layer_end = 0;
  std::int32_t rank = 0;
  // Activation recomputation of this chunk's transformer layers (Megatron-LM's full
  // granularity): the forward keeps only each layer's input and the backward reruns it.
  bool recompute = false;

  friend bool operator==(const Chunk&, const Chunk&) = default;
};

struct Schedule {
  std::int32_t n_ranks = 0;
  std::int32_t n_microbatches = 0;
  std::vector<Chunk> chunks;                               // index = global stage
  std::vector<std::vector<std::int32_t>> microbatch_samples;  // [mb] -> sample indices; may be empty
  std::vector<std::vector<Action>> rank_actions;           // [rank] -> actions in order

  std::int32_t n_stages() const { return static_cast<std::int32_t>(chunks.size()); }
  std::size_t n_actions() const;
  friend bool operator==(const Schedule&, const Schedule&) = default;
};

/// What is wrong with a schedule, and where (a JSON pointer into its file form).
struct Problem {
  std::string pointer;  // e.g. "/actions/1/3"; empty when it concerns the whole schedule
  std::string message;  // one line
  std::string detail;   // optional multi-line text (the deadlock grid)
};

/// Checks structure, placement, that every (stage, microbatch) runs its forward exactly
/// once and its backward as one B or one I plus one W, the order of passes on each rank,
/// and that the ranks' orders can all run to the end without waiting on each other forever.
std::optional<Problem> find_problem(const Schedule& schedule);

/// The rank x step grid PyTorch-style, marking `stuck[r]` (an index into rank r's actions,
/// or -1) with brackets: "rank 1 | 1F0  1F1 [1B0] 1B1".
std::string format_grid(const Schedule& schedule, const std::vector<std::int64_t>& stuck);

/// JSON form (the "schedule" file format, version 1).
common::Json to_json(const Schedule& schedule);
/// Reads and validates a schedule; problems raise InputError naming the file and pointer.
Schedule schedule_from_json(const common::JsonView& root);
Schedule load_schedule(const std::string& path);

/// Checks that microbatch_samples holds every sample of a batch of `n_samples` samples
/// (batch `batch_index` of its trace) exactly once. Problems raise InputError at `where`
/// (the schedule's file) with the entry's JSON pointer.
void check_microbatch_samples(const Schedule& s, std::size_t n_samples, std::int64_t batch_index,
                              const common::Where& where);

}  // namespace pipeweaver::schedule
