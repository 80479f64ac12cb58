#include "engine/model.hpp"

namespace powerinfer2::engine {

Model::Model(const std::string& path)
    : file(path),
      config(model::load_config(file)),
      weights(model::load_weights(file, config)),
      tokenizer(model::Tokenizer::from_gguf(file)) {}

}  // namespace powerinfer2::engine
