// The subcommands of powerinfer2-cli: one register_<verb>() per cmd_<verb>.cpp.
#pragma once

#include "common/cli.hpp"

namespace powerinfer2::cli {

void register_inspect(common::CliApp& cli);
void register_quantize(common::CliApp& cli);
void register_tokenize(common::CliApp& cli);
void register_import(common::CliApp& cli);
void register_generate(common::CliApp& cli);
void register_bench(common::CliApp& cli);
void register_convert(common::CliApp& cli);
void register_profile_activations(common::CliApp& cli);
void register_train_predictor(common::CliApp& cli);
void register_plan(common::CliApp& cli);

inline void register_commands(common::CliApp& cli) {
  register_inspect(cli);
  register_quantize(cli);
  register_tokenize(cli);
  register_import(cli);
  register_generate(cli);
  register_bench(cli);
  register_convert(cli);
  register_profile_activations(cli);
  register_train_predictor(cli);
  register_plan(cli);
}

}  // namespace powerinfer2::cli
