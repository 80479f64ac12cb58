#include "prep/prepare.hpp"

#include <filesystem>
#include <memory>
#include <optional>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "io/gguf_reader.hpp"
#include "io/pi2_format.hpp"
#include "model/model.hpp"
#include "prep/pi2_writer.hpp"
#include "prep/predictor_fit.hpp"

namespace powerinfer2::prep {

namespace {

std::unique_ptr<model::Model> open_dense(const PrepareOptions& o, common::ThreadPool& pool) {
  auto m = std::make_unique<model::Model>(o.model, &pool);
  if (m->pi2)
    throw common::UsageError(o.model + " is already converted: profiling runs the original (dense) GGUF model",
                             "give the dense model; the converted file is the output");
  return m;
}

std::vector<model::TokenId> text_tokens(const model::Model& m, const PrepareOptions& o) {
  if (o.text.empty() == (o.random_tokens == 0))
    throw common::UsageError("give a text or a number of random tokens to run, not both");
  if (o.random_tokens > 0) {  // ids spread over the whole vocabulary (BOS first), fixed seed
    std::vector<model::TokenId> ids(o.random_tokens);
    std::uint64_t s = 0x9E3779B97F4A7C15ULL;
    ids[0] = m.tokenizer.bos_id();
    for (std::size_t i = 1; i < ids.size(); ++i) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      ids[i] = static_cast<model::TokenId>(3 + (s >> 33) % (m.config.vocab - 3));
    }
    return ids;
  }
  const std::string text = common::read_file(o.text);
  std::vector<model::TokenId> ids = m.tokenizer.encode(text, /*add_bos=*/true);
  if (ids.size() < 8)
    throw common::InputError::message(common::Where(o.text), "the text has " + std::to_string(ids.size()) +
                                                                 " tokens, too few to profile (at least 8)");
  if (ids.size() > o.max_tokens) ids.resize(o.max_tokens);
  return ids;
}

// The converted file to rewrite: o.out when it is one, else none (a fresh conversion).
std::unique_ptr<io::GgufFile> target(const PrepareOptions& o) {
  if (!std::filesystem::exists(o.out)) return nullptr;
  auto f = std::make_unique<io::GgufFile>(o.out);
  if (!io::is_pi2(*f))
    throw common::UsageError(o.out + " exists and is not a converted sparse model", "give a new name or a .pi2.gguf");
  return f;
}

}  // namespace

ConvertResult convert(const PrepareOptions& o) {
  common::ThreadPool pool(o.threads);
  const io::GgufFile src(o.model);
  const model::ModelConfig c = model::load_config(src);
  Pi2WriteSpec spec;
  spec.cluster_size = o.cluster_size;
  common::Stopwatch sw;
  write_pi2(src, c, spec, o.out, &pool);
  const io::GgufFile out(o.out);
  const model::Pi2Model m = model::load_pi2(out, c);
  return {c, m.geo, sw.elapsed_s()};
}

ProfileResult profile_activations(const PrepareOptions& o) {
  common::ThreadPool pool(o.threads);
  const auto dense = open_dense(o, pool);
  const std::vector<model::TokenId> ids = text_tokens(*dense, o);
  common::Stopwatch sw;
  const ActivationRecord rec = record_activations(*dense, pool, ids, o.window, 0);
  const auto tgt = target(o);
  const model::ModelConfig& c = dense->config;
  Pi2WriteSpec spec;
  spec.cluster_size = o.cluster_size;
  spec.profiled_tokens = rec.tokens;
  double active = 0.0, top20 = 0.0;
  const std::optional<model::Pi2Model> cur = tgt ? std::optional(model::load_pi2(*tgt, c)) : std::nullopt;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    // Frequencies and order in the target's current order (its perm maps to dense neurons).
    std::vector<std::uint64_t> fired(c.ffn_dim);
    std::vector<float> freq(c.ffn_dim);
    std::vector<std::int32_t> perm(c.ffn_dim);
    for (std::size_t p = 0; p < c.ffn_dim; ++p) perm[p] = static_cast<std::int32_t>(p);
    if (cur)
      for (std::size_t p = 0; p < c.ffn_dim; ++p) perm[p] = cur->layers[l].perm[p];
    for (std::size_t p = 0; p < c.ffn_dim; ++p) {
      fired[p] = rec.fired[l][static_cast<std::size_t>(perm[p])];
      freq[p] = static_cast<float>(static_cast<double>(fired[p]) / static_cast<double>(rec.tokens));
    }
    spec.order.push_back(hotness_order(fired));
    spec.freq.push_back(std::move(freq));
    std::uint64_t total = 0, top = 0;
    for (std::size_t k = 0; k < c.ffn_dim; ++k) {
      total += fired[static_cast<std::size_t>(spec.order.back()[k])];
      if (k < c.ffn_dim / 5) top += fired[static_cast<std::size_t>(spec.order.back()[k])];
    }
    active += static_cast<double>(total) / static_cast<double>(rec.tokens * c.ffn_dim);
    top20 += total > 0 ? static_cast<double>(top) / static_cast<double>(total) : 0.0;
  }
  if (tgt)
    write_pi2(*tgt, c, spec, o.out, &pool);
  else
    write_pi2(dense->file, c, spec, o.out, &pool);
  return {rec.tokens, c.n_layer, active / c.n_layer, top20 / c.n_layer, sw.elapsed_s()};
}

TrainResult train_predictor(const PrepareOptions& o) {
  common::ThreadPool pool(o.threads);
  const auto dense = open_dense(o, pool);
  const std::vector<model::TokenId> ids = text_tokens(*dense, o);
  common::Stopwatch sw;
  const ActivationRecord rec = record_activations(*dense, pool, ids, o.window, o.samples);
  const model::ModelConfig& c = dense->config;
  auto tgt = target(o);
  if (!tgt) {  // convert first
    Pi2WriteSpec spec;
    spec.cluster_size = o.cluster_size;
    write_pi2(dense->file, c, spec, o.out, &pool);
    tgt = std::make_unique<io::GgufFile>(o.out);
  }
  const model::Pi2Model cur = model::load_pi2(*tgt, c);
  std::vector<std::vector<std::int32_t>> perm;
  for (const model::Pi2Layer& L : cur.layers) perm.emplace_back(L.perm.begin(), L.perm.end());
  PredictorFitOptions fo;
  fo.target_recall = o.recall;
  fo.max_rank = o.max_rank;
  TrainResult r;
  Pi2WriteSpec spec;
  spec.predictors = train_predictors(*dense, pool, rec, perm, fo, r.layers);
  for (const LayerFitReport& L : r.layers) {
    r.recall += L.recall;
    r.precision += L.precision;
    r.predicted_fraction += L.predicted_fraction;
    r.true_fraction += L.true_fraction;
  }
  const double n = static_cast<double>(r.layers.size());
  r.recall /= n;
  r.precision /= n;
  r.predicted_fraction /= n;
  r.true_fraction /= n;
  spec.predictor_recall = static_cast<float>(r.recall);
  spec.predictor_precision = static_cast<float>(r.precision);
  write_pi2(*tgt, c, spec, o.out, &pool);
  r.n_kept = rec.n_kept;
  r.tokens = rec.tokens;
  r.seconds = sw.elapsed_s();
  return r;
}

}  // namespace powerinfer2::prep
