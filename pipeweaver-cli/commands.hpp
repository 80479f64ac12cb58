// The subcommands of pipeweaver-cli: one register_<verb>() per cmd_<verb>.cpp.
#pragma once

#include "common/cli.hpp"

namespace pipeweaver::cli {

inline void register_commands(common::CliApp& cli) {
  (void)cli;
}

}  // namespace pipeweaver::cli
