// llama-bench's pp/tg tests: prefill of n_prompt tokens at position 0, and decode of n_gen
// tokens one by one from position 0, each repeated; tokens/s as mean and sample stddev.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "model/forward.hpp"

namespace powerinfer2::engine {

struct BenchFigure {
  double mean_tok_s = 0.0;
  double stddev_tok_s = 0.0;
  std::vector<double> samples_tok_s;
};

struct BenchResult {
  BenchFigure prefill, decode;
  std::uint64_t peak_rss_bytes = 0;
};

/// One untimed warm-up of each, then `reps` timed runs. Token ids are fixed pseudo-random
/// ids of the vocabulary (the content does not change the work of a dense pass). n_prompt or
/// n_gen larger than the context is an InputError; 0 skips that test.
BenchResult bench(model::Forward& forward, std::size_t n_prompt, std::size_t n_gen, std::size_t reps);

}  // namespace powerinfer2::engine
