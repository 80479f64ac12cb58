// `powerinfer2-cli import --llama2c MODEL.bin --tokenizer TOK.bin -o MODEL.gguf`: converts a
// llama2.c checkpoint and its tokenizer into a standard llama GGUF that llama.cpp loads.
#include <memory>

#include "commands.hpp"
#include "common/log.hpp"
#include "io/llama2c.hpp"

namespace powerinfer2::cli {

namespace {

struct ImportOptions {
  std::string llama2c;
  std::string tokenizer;
  std::string output;
};

void run_import(const ImportOptions& o) {
  const io::Llama2cConfig c = io::import_llama2c(o.llama2c, o.tokenizer, o.output);
  common::log_info("wrote ", o.output, ": llama, ", c.n_layers, " layers, dim ", c.dim, ", ffn ", c.hidden_dim,
                   ", ", c.n_heads, " heads (", c.n_kv_heads, " kv), vocab ", c.vocab_size, ", context ", c.seq_len,
                   c.shared_classifier ? ", classifier shared with the embedding" : ", separate classifier");
}

}  // namespace

void register_import(common::CliApp& cli) {
  auto opts = std::make_shared<ImportOptions>();
  CLI::App* cmd = cli.add_command("import", "Convert a llama2.c checkpoint and tokenizer into a llama GGUF",
                                  [opts] { run_import(*opts); });
  cmd->add_option("--llama2c", opts->llama2c, "llama2.c checkpoint (legacy version 0, as run.c reads)")->required();
  cmd->add_option("--tokenizer", opts->tokenizer, "llama2.c tokenizer file (tokenizer.bin, tok512.bin, ...)")
      ->required();
  cmd->add_option("-o,--output", opts->output, "GGUF file to write (atomically: no partial file on error)")
      ->required();
}

}  // namespace powerinfer2::cli
