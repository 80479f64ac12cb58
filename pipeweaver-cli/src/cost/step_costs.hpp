// The cost model's output for one step: the time and memory of every pass of every
// (stage, microbatch), the transfer times across stage boundaries, and each rank's static
// memory and capacity. SEMU plays a schedule against this table.
#pragma once

#include <cstdint>
#include <vector>

namespace pipeweaver::cost {

/// The cost of one step's passes, indexed [stage * n_microbatches + microbatch].
struct StepCosts {
  std::int32_t n_stages = 0;
  std::int32_t n_microbatches = 0;
  std::vector<std::int64_t> f_ns;        // forward
  std::vector<std::int64_t> b_ns;        // full backward (input + weight gradients)
  std::vector<std::int64_t> i_ns;        // input-gradient backward
  std::vector<std::int64_t> w_ns;        // weight-gradient backward
  std::vector<std::int64_t> send_f_ns;   // stage s's output to stage s + 1 (when on another rank)
  std::vector<std::int64_t> send_b_ns;   // stage s's input gradient to stage s - 1
  std::vector<std::int64_t> act_bytes;   // activations held from F until backward
  std::vector<std::int64_t> act_w_bytes; // the part of act_bytes still needed after I, until W
  std::vector<std::int64_t> static_bytes;    // [rank] weights, gradients, optimizer state
  std::vector<std::int64_t> capacity_bytes;  // [rank] device memory; 0 = unlimited

  /// Sized for a schedule, all zero.
  static StepCosts zeros(std::int32_t n_stages, std::int32_t n_microbatches, std::int32_t n_ranks);
  std::size_t at(std::int32_t stage, std::int32_t mb) const {
    return static_cast<std::size_t>(stage) * static_cast<std::size_t>(n_microbatches) + static_cast<std::size_t>(mb);
  }
};

}  // namespace pipeweaver::cost
