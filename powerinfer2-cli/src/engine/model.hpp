// A loaded model: the open GGUF file (weights are views into its mapping), its config,
// weight views and tokenizer. Non-copyable.
#pragma once

#include <string>

#include "io/gguf_reader.hpp"
#include "model/config.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"

namespace powerinfer2::engine {

struct Model {
  /// Opens and validates `path` (IoError / InputError as GgufFile, load_config, load_weights).
  explicit Model(const std::string& path);
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  io::GgufFile file;
  model::ModelConfig config;
  model::ModelWeights weights;
  model::Tokenizer tokenizer;
};

}  // namespace powerinfer2::engine
