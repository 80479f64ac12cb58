// One step of a pipeline schedule: a pass of one virtual stage over one microbatch.
// Prints and parses as PyTorch's pipelining strings, "<stage><op><microbatch>": "2F0",
// "1B3", "0I1", "0W1", where stage is the global virtual stage (chunk) index.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/errors.hpp"

namespace pipeweaver::schedule {

enum class Op : std::uint8_t {
  F,  // forward
  B,  // full backward (input and weight gradients together)
  I,  // backward, input gradient only (zero-bubble split)
  W,  // backward, weight gradient only
};

char op_char(Op op);

struct Action {
  std::int32_t stage = 0;       // global virtual stage (chunk) index
  Op op = Op::F;
  std::int32_t microbatch = 0;

  friend bool operator==(const Action&, const Action&) = default;
};

std::string to_string(const Action& action);

/// Parses "2F0"; bad text raises InputError at `where` ("expected an action such as
/// 2F0 (stage, F/B/I/W, microbatch), got \"2X0\"").
Action parse_action(std::string_view text, const common::Where& where);

}  // namespace pipeweaver::schedule
