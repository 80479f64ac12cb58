// The weaver: turns a chunk placement and the costs of one batch's passes into per-rank
// action orders by cost-aware list scheduling. It plays the step greedily: whenever a rank is
// free it runs, among the passes whose inputs have arrived, a backward before a forward
// (1F1B's rule: it frees memory and unblocks the ranks upstream), forwards in the policy's
// order, and - with the backward split - deferred weight-gradient passes (W) to fill time
// when nothing else is ready (the zero-bubble idea). A microbatch enters a rank only when
// the activations of all its chunks there fit in the memory left after the static state,
// so every admitted microbatch can finish its forwards and the order cannot deadlock
// (with WeavePolicy::w_bounded_by_memory, W passes run first whenever an I would not fit).
// The order is then scored by SEMU (the weaver's own timing ignores link contention).
#pragma once

#include <cstdint>

#include "schedule/schedule.hpp"
#include "semu/semu.hpp"

namespace pipeweaver::search {

enum class ForwardOrder : std::uint8_t {
  breadth,  // oldest microbatch first, then the earliest stage
  depth,    // the latest stage first (push one microbatch through), then the oldest
};

struct WeavePolicy {
  bool split_backward = true;  // I + W (W deferred to fill idle time) instead of B
  ForwardOrder forward = ForwardOrder::breadth;
  std::int32_t max_in_flight = 0;  // microbatches admitted per rank at once; 0 = memory only
  // With the backward split: admit a microbatch for its activations alone (not for what its
  // deferred W passes will hold), keep room for one I's growth, and run pending W passes
  // before an I that would not fit. More microbatches in flight when W's inputs are the big
  // part (recomputed layers), at the price of W passes deferred less.
  bool w_bounded_by_memory = false;
};

/// Fills s.rank_actions. `s` has its chunks (with ranks) and n_microbatches set; `costs`
/// is sized for it. The result passes schedule::find_problem.
void weave(schedule::Schedule& s, const cost::StepCosts& costs, const WeavePolicy& policy);

}  // namespace pipeweaver::search
