// The offline steps that turn a dense ReGLU / dReLU model into a converted sparse one, each
// writing the .pi2.gguf file (temporary + rename) and returning what it measured:
//   convert:             the FFN into neuron bundles;
//   profile_activations: the dense engine over a text, per-neuron activation frequencies, the
//                        neurons of each layer sorted hottest first;
//   train_predictor:     the per-layer activation predictors fitted on recorded FFN inputs.
// The last two update the converted file, converting the dense model first when it is absent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.hpp"
#include "model/pi2_model.hpp"
#include "prep/profile.hpp"

namespace powerinfer2::prep {

struct PrepareOptions {
  std::string model;               // the original (dense) GGUF model
  std::string out;                 // the converted file to write or update
  std::string text;                // text to run (profile, train); empty: random_tokens ids
  std::size_t random_tokens = 0;   // > 0: that many pseudo-random ids over the whole vocabulary
  std::size_t cluster_size = 0;    // neurons per cluster when converting (0: 32, or the input's)
  std::size_t threads = 2;
  std::size_t max_tokens = 4096;   // tokens of the text used
  std::size_t window = 512;        // tokens per forward window (each from position 0)
  std::size_t samples = 1024;      // train: tokens whose FFN inputs train the predictors
  double recall = 0.99;            // train: held-out recall target
  std::size_t max_rank = 0;        // train: largest predictor rank (0: dim / 16)
};

struct ConvertResult {
  model::ModelConfig config;
  model::BundleGeometry geo;
  double seconds = 0.0;
};

/// Converts o.model (dense, or a converted file to re-cluster) into o.out.
ConvertResult convert(const PrepareOptions& o);

struct ProfileResult {
  std::uint64_t tokens = 0;
  std::size_t n_layer = 0;
  double active_fraction = 0.0;  // FFN neurons active per token, mean over layers
  double top20_share = 0.0;      // activations carried by the hottest 20% of neurons, mean
  double seconds = 0.0;
};

/// Records activation frequencies of o.model over the text and sorts o.out's neurons by them.
ProfileResult profile_activations(const PrepareOptions& o);

struct TrainResult {
  std::vector<LayerFitReport> layers;  // held-out figures per layer
  std::size_t n_kept = 0;              // samples
  std::uint64_t tokens = 0;            // tokens run
  double recall = 0.0, precision = 0.0, predicted_fraction = 0.0, true_fraction = 0.0;  // means
  double seconds = 0.0;
};

/// Fits the activation predictors of o.model over the text and stores them in o.out.
TrainResult train_predictor(const PrepareOptions& o);

}  // namespace powerinfer2::prep
