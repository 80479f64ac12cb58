// SEMU: the step emulator. Given a schedule and the cost of every pass, it plays one
// training step as discrete events: each rank has a compute stream that runs its actions
// in the schedule's order, plus a send and a receive link; an action starts when its inputs
// have arrived and its rank is free (the waiting is the pipeline bubble). Transfers between
// ranks occupy the sender's send link and the receiver's receive link (FIFO in issue order).
// All times are integer nanoseconds, so closed forms can be checked exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cost/step_costs.hpp"
#include "schedule/schedule.hpp"

namespace pipeweaver::semu {

/// One executed pass or transfer, for timelines.
struct TimelineEvent {
  enum class Kind : std::uint8_t { compute, transfer } kind;
  std::int32_t rank;       // compute: its rank; transfer: the sender
  std::int32_t peer_rank;  // transfer: the receiver
  schedule::Action action; // compute: the pass; transfer: the producing pass
  std::int64_t start_ns, end_ns;
};

struct MemorySample {
  std::int32_t rank;
  std::int64_t time_ns;
  std::int64_t bytes;  // static + activations at that time
};

struct Result {
  std::int64_t step_ns = 0;                 // time when the last pass ends
  std::vector<std::int64_t> busy_ns;        // [rank] compute time
  std::vector<std::int64_t> idle_ns;        // [rank] step_ns - busy
  double bubble_ratio = 0;                  // idle / (ranks * step), over all ranks
  std::int64_t p2p_ns = 0;                  // total link time of all transfers
  std::int64_t n_transfers = 0;
  std::vector<std::int64_t> peak_mem_bytes; // [rank] static + peak activations
  std::vector<std::int64_t> peak_act_microbatches;  // [rank] most microbatches held at once
  bool exceeds_memory = false;              // some rank's peak is above its capacity
  std::int64_t n_actions = 0;
  std::vector<TimelineEvent> timeline;      // when Options::record_timeline
  std::vector<MemorySample> memory;         // when Options::record_timeline
};

struct Options {
  bool record_timeline = false;
};

/// The run state of simulate(), sized on first use and kept between calls, so that playing
/// step after step allocates nothing but the Result. Not shareable between threads.
class Workspace {
 public:
  Workspace();
  ~Workspace();
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  struct State;
  State& state() { return *state_; }

 private:
  std::unique_ptr<State> state_;
};

/// Plays the schedule. The schedule must be valid (schedule::find_problem finds nothing);
/// costs must be sized for it. Runs in O(actions * log(ranks)). Uses this thread's own
/// workspace (thread-safe: threads never share one).
Result simulate(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options = {});
/// The same with a workspace of the caller's.
Result simulate(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options,
                Workspace& workspace);

}  // namespace pipeweaver::semu
