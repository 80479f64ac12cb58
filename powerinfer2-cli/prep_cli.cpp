#include "prep_cli.hpp"

#include "common/errors.hpp"

namespace powerinfer2::cli {

void add_text_run_options(CLI::App* cmd, prep::PrepareOptions& o) {
  cmd->add_option("-m,--model", o.model, "The original GGUF model (its dense engine runs)")->required();
  cmd->add_option("-f,--file", o.text, "Text to run");
  cmd->add_option("--random-tokens", o.random_tokens,
                  "Run N pseudo-random token ids of the whole vocabulary instead of a text (synthetic models, "
                  "whose byte-level vocabulary a text covers only a hundred ids of)");
  cmd->add_option("-o,--output", o.out, "Converted file to update (created by converting -m when absent)")->required();
  cmd->add_option("--max-tokens", o.max_tokens, "Tokens of the text to use")->capture_default_str();
  cmd->add_option("--window", o.window, "Tokens per forward window (each from position 0)")->capture_default_str();
  cmd->add_option("--cluster-size", o.cluster_size, "Neurons per cluster when converting");
  cmd->add_option("-t,--threads", o.threads, "Threads")->capture_default_str();
}

void check_text_run_options(const prep::PrepareOptions& o) {
  if (o.text.empty() == (o.random_tokens == 0)) throw common::UsageError("give one of -f TEXT and --random-tokens N");
}

}  // namespace powerinfer2::cli
