// `powerinfer2-cli train-predictor -m MODEL.gguf -f TEXT -o MODEL.pi2.gguf [--recall R]
// [--max-rank K]`: runs the dense engine of the original model over the text, fits the
// per-layer activation predictors on the recorded FFN inputs and stores them in the converted
// file (converting first when absent).
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "prep/prepare.hpp"
#include "prep_cli.hpp"

namespace powerinfer2::cli {

namespace {

void run_train(const prep::PrepareOptions& o) {
  check_text_run_options(o);
  const prep::TrainResult r = prep::train_predictor(o);
  std::printf("layer  rank  recall  precision  predicted  active   (held-out, %zu samples of %llu tokens)\n", r.n_kept,
              static_cast<unsigned long long>(r.tokens));
  for (std::size_t l = 0; l < r.layers.size(); ++l) {
    const prep::LayerFitReport& L = r.layers[l];
    std::printf("%5zu  %4zu  %6.4f  %9.4f  %9.4f  %6.4f\n", l, L.rank, L.recall, L.precision, L.predicted_fraction,
                L.true_fraction);
  }
  std::printf("%s: predictors stored: mean recall %.4f, precision %.4f, %.1f%% of neurons predicted for %.1f%% active, "
              "%.1f s\n",
              o.out.c_str(), r.recall, r.precision, 100.0 * r.predicted_fraction, 100.0 * r.true_fraction, r.seconds);
}

}  // namespace

void register_train_predictor(common::CliApp& cli) {
  auto o = std::make_shared<prep::PrepareOptions>();
  CLI::App* cmd =
      cli.add_command("train-predictor", "Train the per-layer activation predictors on recorded activations and store them",
                      [o] { run_train(*o); });
  add_text_run_options(cmd, *o);
  cmd->add_option("--samples", o->samples, "Tokens whose FFN inputs train the predictors")->capture_default_str();
  cmd->add_option("--recall", o->recall, "Held-out recall target")->capture_default_str()->check(CLI::Range(0.5, 1.0));
  cmd->add_option("--max-rank", o->max_rank, "Largest predictor rank (0: dim / 16)")->capture_default_str();
}

}  // namespace powerinfer2::cli
