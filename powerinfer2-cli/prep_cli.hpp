// The options profile-activations and train-predictor share: the dense model, the text (or
// random ids) its engine runs over, and the converted file they update.
#pragma once

#include "common/cli.hpp"
#include "prep/prepare.hpp"

namespace powerinfer2::cli {

/// Adds -m, -f, --random-tokens, -o, --max-tokens, --window, --cluster-size and -t.
void add_text_run_options(CLI::App* cmd, prep::PrepareOptions& o);

/// UsageError unless exactly one of -f and --random-tokens was given.
void check_text_run_options(const prep::PrepareOptions& o);

}  // namespace powerinfer2::cli
