// powerinfer2-cli: LLM inference beyond memory through activation sparsity.
// Thin executable: each subcommand lives in its own cmd_<verb>.cpp over powerinfer2_core.
#include "commands.hpp"

int main(int argc, char** argv) {
  common::CliApp cli("powerinfer2-cli",
                     "Run LLM inference on machines whose memory is smaller than the model,\n"
                     "exploiting activation sparsity (GGUF models).");
  powerinfer2::cli::register_commands(cli);
  return cli.run(argc, argv);
}
