// The generate loop: tokenize the prompt (BOS first), prefill it, then sample and decode one
// token at a time, handing each token's text to a callback as it is produced (the library
// never prints). Stops after n_predict tokens, at EOS/BOS, or at the end of the context.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/sampler.hpp"
#include "model/forward.hpp"

namespace powerinfer2::engine {

struct GenerateStats {
  std::size_t prompt_tokens = 0;     // including BOS
  std::size_t generated_tokens = 0;  // sampled tokens (a stop token is not counted)
  double prefill_s = 0.0;            // prompt forward pass
  double decode_s = 0.0;             // decode forward passes and sampling after the first token
  std::size_t decode_steps = 0;      // decode forward passes
  double ttft_ms = 0.0;              // from start to the first sampled token (prefill + sample)
  double prefill_tok_s = 0.0;
  double decode_tok_s = 0.0;
  std::uint64_t peak_rss_bytes = 0;
};

struct GenerateResult {
  std::string text;
  std::vector<model::TokenId> tokens;  // generated ids
  GenerateStats stats;
};

/// Generates up to `n_predict` tokens after `prompt`. An empty prompt feeds BOS only. The
/// first piece after BOS loses its leading space (as llama2.c prints). A prompt longer than
/// the context is an InputError ("prompt has N tokens, the model's context is M").
GenerateResult generate(const model::Model& model, model::Forward& forward, std::string_view prompt,
                        std::size_t n_predict, Sampler& sampler,
                        const std::function<void(std::string_view)>& on_text = {});

}  // namespace powerinfer2::engine
