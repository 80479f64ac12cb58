// The reference SEMU: the plain event loop (every transfer's arrival is an event, run state
// allocated per call). simulate() must agree with it exactly; tests compare the two.
#pragma once

#include "semu/semu.hpp"

namespace pipeweaver::semu {

/// The same contract and results as simulate(), by the direct method (slower).
Result simulate_reference(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options = {});

}  // namespace pipeweaver::semu
