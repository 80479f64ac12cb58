#include "engine/generate.hpp"

#include "common/errors.hpp"
#include "common/rss.hpp"
#include "common/timer.hpp"

namespace powerinfer2::engine {

GenerateResult generate(const model::Model& model, model::Forward& forward, std::string_view prompt,
                        std::size_t n_predict, Sampler& sampler,
                        const std::function<void(std::string_view)>& on_text) {
  const model::Tokenizer& tok = model.tokenizer;
  GenerateResult r;
  common::Stopwatch clock;
  const std::vector<model::TokenId> ids = tok.encode(prompt, tok.add_bos() || prompt.empty());
  if (ids.empty())
    throw common::InputError::message(common::Where(model.file.path()), "the prompt gave no tokens and the "
                                                                        "vocabulary adds no BOS");
  if (ids.size() > forward.n_ctx())
    throw common::InputError::message(common::Where("prompt"), "prompt has " + std::to_string(ids.size()) +
                                                                   " tokens, the model's context is " +
                                                                   std::to_string(forward.n_ctx()),
                                      "shorten the prompt");
  r.stats.prompt_tokens = ids.size();
  r.tokens.reserve(n_predict);
  r.text.reserve(n_predict * 8);
  std::string piece;
  piece.reserve(64);

  std::span<const float> logits = forward.prefill(ids, 0);
  r.stats.prefill_s = clock.elapsed_s();
  std::size_t pos = ids.size();
  model::TokenId prev = ids.back();
  common::Stopwatch decode_clock;
  for (std::size_t i = 0; i < n_predict; ++i) {
    const model::TokenId next = sampler.sample(logits);
    if (i == 0) {
      r.stats.ttft_ms = clock.elapsed_ms();
      decode_clock.reset();
    }
    if (next == tok.eos_id() || next == tok.bos_id()) break;
    r.tokens.push_back(next);
    piece.clear();
    tok.append_text(prev, next, /*strip_space_prefix=*/true, piece);
    r.text += piece;
    if (on_text && !piece.empty()) on_text(piece);
    prev = next;
    if (i + 1 == n_predict || pos >= forward.n_ctx()) break;
    logits = forward.decode(next, pos++);
    ++r.stats.decode_steps;
  }
  r.stats.generated_tokens = r.tokens.size();
  r.stats.decode_s = r.tokens.empty() ? 0.0 : decode_clock.elapsed_s();
  r.stats.prefill_tok_s = r.stats.prefill_s > 0 ? static_cast<double>(ids.size()) / r.stats.prefill_s : 0.0;
  r.stats.decode_tok_s = r.stats.decode_s > 0 ? static_cast<double>(r.stats.decode_steps) / r.stats.decode_s : 0.0;
  r.stats.peak_rss_bytes = common::peak_rss_bytes();
  return r;
}

}  // namespace powerinfer2::engine
