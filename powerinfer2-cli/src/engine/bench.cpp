#include "engine/bench.hpp"

#include <cmath>

#include "common/errors.hpp"
#include "common/rss.hpp"
#include "common/timer.hpp"
#include "engine/sampler.hpp"

namespace powerinfer2::engine {

namespace {

BenchFigure summarize(std::vector<double> samples) {
  BenchFigure f;
  f.samples_tok_s = std::move(samples);
  if (f.samples_tok_s.empty()) return f;
  double sum = 0.0;
  for (double s : f.samples_tok_s) sum += s;
  f.mean_tok_s = sum / static_cast<double>(f.samples_tok_s.size());
  if (f.samples_tok_s.size() > 1) {
    double ss = 0.0;
    for (double s : f.samples_tok_s) ss += (s - f.mean_tok_s) * (s - f.mean_tok_s);
    f.stddev_tok_s = std::sqrt(ss / static_cast<double>(f.samples_tok_s.size() - 1));
  }
  return f;
}

}  // namespace

BenchResult bench(model::Forward& forward, std::size_t n_prompt, std::size_t n_gen, std::size_t reps) {
  for (auto [n, what] : {std::pair{n_prompt, "prompt"}, std::pair{n_gen, "generation"}})
    if (n > forward.n_ctx())
      throw common::InputError::message(common::Where("bench"), std::string(what) + " length " + std::to_string(n) +
                                                                    " exceeds the model's context " +
                                                                    std::to_string(forward.n_ctx()));
  Rng rng(1234);
  std::vector<model::TokenId> tokens(std::max(n_prompt, n_gen));
  for (auto& t : tokens) t = static_cast<model::TokenId>(rng.next_u64() % forward.vocab());

  std::vector<double> pp, tg;
  for (std::size_t r = 0; r <= reps; ++r) {  // r == 0: warm-up
    if (n_prompt > 0) {
      common::Stopwatch sw;
      forward.prefill(std::span(tokens).first(n_prompt), 0);
      const double s = sw.elapsed_s();
      if (r > 0) pp.push_back(static_cast<double>(n_prompt) / s);
    }
    if (n_gen > 0) {
      common::Stopwatch sw;
      for (std::size_t i = 0; i < n_gen; ++i) forward.decode(tokens[i], i);
      const double s = sw.elapsed_s();
      if (r > 0) tg.push_back(static_cast<double>(n_gen) / s);
    }
  }
  BenchResult out;
  out.prefill = summarize(std::move(pp));
  out.decode = summarize(std::move(tg));
  out.peak_rss_bytes = common::peak_rss_bytes();
  return out;
}

}  // namespace powerinfer2::engine
