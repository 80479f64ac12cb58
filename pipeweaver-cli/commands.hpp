// The subcommands of pipeweaver-cli: one register_<verb>() per cmd_<verb>.cpp.
#pragma once

#include "common/cli.hpp"

namespace pipeweaver::cli {

void register_gen_trace(common::CliApp& cli);
void register_profile(common::CliApp& cli);
void register_simulate(common::CliApp& cli);
void register_search(common::CliApp& cli);
void register_schedule(common::CliApp& cli);
void register_export(common::CliApp& cli);

inline void register_commands(common::CliApp& cli) {
  register_gen_trace(cli);
  register_profile(cli);
  register_simulate(cli);
  register_search(cli);
  register_schedule(cli);
  register_export(cli);
}

}  // namespace pipeweaver::cli
