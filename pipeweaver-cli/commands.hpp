// The subcommands of pipeweaver-cli: one register_<verb>() per cmd_<verb>.cpp.
#pragma once

#include "common/cli.hpp"

namespace pipeweaver::cli {

void register_gen_trace(common::CliApp& cli);

inline void register_commands(common::CliApp& cli) {
  register_gen_trace(cli);
}

}  // namespace pipeweaver::cli
