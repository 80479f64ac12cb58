// `powerinfer2-cli profile-activations -m MODEL.gguf -f TEXT -o MODEL.pi2.gguf [--max-tokens N]`:
// runs the dense engine of the original model over the text, records per-neuron activation
// frequencies and sorts the converted file's neurons by them (converting first when absent).
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "prep/prepare.hpp"
#include "prep_cli.hpp"

namespace powerinfer2::cli {

namespace {

void run_profile(const prep::PrepareOptions& o) {
  check_text_run_options(o);
  const prep::ProfileResult r = prep::profile_activations(o);
  std::printf("%s: profiled %llu tokens of %s: %.1f%% of FFN neurons active per token, the hottest 20%% carry %.1f%% "
              "of activations (mean over %zu layers); neurons sorted by frequency, %.1f s\n",
              o.out.c_str(), static_cast<unsigned long long>(r.tokens), o.text.empty() ? "random ids" : o.text.c_str(),
              100.0 * r.active_fraction, 100.0 * r.top20_share, r.n_layer, r.seconds);
}

}  // namespace

void register_profile_activations(common::CliApp& cli) {
  auto o = std::make_shared<prep::PrepareOptions>();
  CLI::App* cmd = cli.add_command("profile-activations",
                                  "Record per-neuron activation frequency and sort the converted file's neurons by it",
                                  [o] { run_profile(*o); });
  add_text_run_options(cmd, *o);
}

}  // namespace powerinfer2::cli
