// pipeweaver-cli: searches pipeline-parallel training schedules for multimodal models.
// Thin executable: each subcommand lives in its own cmd_<verb>.cpp over pipeweaver_core.
#include "commands.hpp"

int main(int argc, char** argv) {
  common::CliApp cli("pipeweaver-cli",
                     "Search pipeline-parallel training schedules for large multimodal models,\n"
                     "batch by batch, scored by the SEMU step emulator.");
  pipeweaver::cli::register_commands(cli);
  return cli.run(argc, argv);
}
