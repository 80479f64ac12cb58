// The subcommands of powerinfer2-cli: one register_<verb>() per cmd_<verb>.cpp.
#pragma once

#include "common/cli.hpp"

namespace powerinfer2::cli {

void register_inspect(common::CliApp& cli);

inline void register_commands(common::CliApp& cli) {
  register_inspect(cli);
}

}  // namespace powerinfer2::cli
