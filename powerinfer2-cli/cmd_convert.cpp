// Offline preparation of a sparse model:
//   convert -m MODEL.gguf -o MODEL.pi2.gguf [--cluster-size N]
//   profile-activations -m MODEL.gguf -f TEXT -o MODEL.pi2.gguf [--max-tokens N]
//   train-predictor -m MODEL.gguf -f TEXT -o MODEL.pi2.gguf [--recall R] [--max-rank K]
// profile-activations and train-predictor run the dense engine of the original model over
// the text and rewrite the converted file (converting it first when it does not exist).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/timer.hpp"
#include "common/thread_pool.hpp"
#include "engine/model.hpp"
#include "sparse/pi2_format.hpp"
#include "sparse/profile.hpp"

namespace powerinfer2::cli {

namespace {

struct PrepOptions {
  std::string model, out, text;
  std::size_t cluster_size = 0;
  std::size_t threads = 2;
  std::size_t max_tokens = 4096;
  std::size_t samples = 1024;
  std::size_t window = 512;
  double recall = 0.99;
  std::size_t max_rank = 0;
  std::size_t random_tokens = 0;
};

std::unique_ptr<engine::Model> open_dense(const PrepOptions& o, common::ThreadPool& pool) {
  auto m = std::make_unique<engine::Model>(o.model, &pool);
  if (m->pi2)
    throw common::UsageError(o.model + " is already converted: -m takes the original (dense) GGUF model",
                             "the converted file goes to -o");
  return m;
}

std::vector<model::TokenId> text_tokens(const engine::Model& m, const PrepOptions& o) {
  if (o.text.empty() == (o.random_tokens == 0)) throw common::UsageError("give one of -f TEXT and --random-tokens N");
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

// The converted file to rewrite: -o when it is one, else a fresh conversion of -m.
std::unique_ptr<io::GgufFile> target(const PrepOptions& o) {
  if (!std::filesystem::exists(o.out)) return nullptr;
  auto f = std::make_unique<io::GgufFile>(o.out);
  if (!sparse::is_pi2(*f))
    throw common::UsageError(o.out + " exists and is not a converted sparse model", "give a new name or a .pi2.gguf");
  return f;
}

void run_convert(const PrepOptions& o) {
  common::ThreadPool pool(o.threads);
  const io::GgufFile src(o.model);
  const model::ModelConfig c = model::load_config(src);
  sparse::Pi2WriteSpec spec;
  spec.cluster_size = o.cluster_size;
  common::Stopwatch sw;
  sparse::write_pi2(src, c, spec, o.out, &pool);
  const io::GgufFile out(o.out);
  const sparse::Pi2Model m = sparse::load_pi2(out, c);
  std::printf("%s: %u layers x %u neurons in clusters of %zu (%zu bytes per bundle, %zu per cluster), %s, %.1f s\n",
              o.out.c_str(), c.n_layer, c.ffn_dim, m.geo.cluster_size, m.geo.stride, m.geo.cluster_bytes(),
              std::string(io::ggml_type_name(m.geo.type)).c_str(), sw.elapsed_s());
}

void run_profile(const PrepOptions& o) {
  common::ThreadPool pool(o.threads);
  const auto dense = open_dense(o, pool);
  const std::vector<model::TokenId> ids = text_tokens(*dense, o);
  common::Stopwatch sw;
  const sparse::ActivationRecord rec = sparse::record_activations(*dense, pool, ids, o.window, 0);
  const auto tgt = target(o);
  const model::ModelConfig& c = dense->config;
  sparse::Pi2WriteSpec spec;
  spec.cluster_size = o.cluster_size;
  spec.profiled_tokens = rec.tokens;
  double active = 0.0, top20 = 0.0;
  const std::optional<sparse::Pi2Model> cur = tgt ? std::optional(sparse::load_pi2(*tgt, c)) : std::nullopt;
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
    spec.order.push_back(sparse::hotness_order(fired));
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
    sparse::write_pi2(*tgt, c, spec, o.out, &pool);
  else
    sparse::write_pi2(dense->file, c, spec, o.out, &pool);
  std::printf("%s: profiled %llu tokens of %s: %.1f%% of FFN neurons active per token, the hottest 20%% carry %.1f%% "
              "of activations (mean over %u layers); neurons sorted by frequency, %.1f s\n",
              o.out.c_str(), static_cast<unsigned long long>(rec.tokens), o.text.empty() ? "random ids" : o.text.c_str(),
              100.0 * active / c.n_layer, 100.0 * top20 / c.n_layer, c.n_layer, sw.elapsed_s());
}

void run_train(const PrepOptions& o) {
  common::ThreadPool pool(o.threads);
  const auto dense = open_dense(o, pool);
  const std::vector<model::TokenId> ids = text_tokens(*dense, o);
  common::Stopwatch sw;
  const sparse::ActivationRecord rec = sparse::record_activations(*dense, pool, ids, o.window, o.samples);
  const model::ModelConfig& c = dense->config;
  auto tgt = target(o);
  if (!tgt) {  // convert first
    sparse::Pi2WriteSpec spec;
    spec.cluster_size = o.cluster_size;
    sparse::write_pi2(dense->file, c, spec, o.out, &pool);
    tgt = std::make_unique<io::GgufFile>(o.out);
  }
  const sparse::Pi2Model cur = sparse::load_pi2(*tgt, c);
  std::vector<std::vector<std::int32_t>> perm;
  for (const sparse::Pi2Layer& L : cur.layers) perm.emplace_back(L.perm.begin(), L.perm.end());
  sparse::PredictorFitOptions fo;
  fo.target_recall = o.recall;
  fo.max_rank = o.max_rank;
  std::vector<sparse::LayerFitReport> reports;
  sparse::Pi2WriteSpec spec;
  spec.predictors = sparse::train_predictors(*dense, pool, rec, perm, fo, reports);
  double recall = 0.0, precision = 0.0, predicted = 0.0, truth = 0.0;
  std::printf("layer  rank  recall  precision  predicted  active   (held-out, %zu samples of %llu tokens)\n",
              rec.n_kept, static_cast<unsigned long long>(rec.tokens));
  for (std::size_t l = 0; l < reports.size(); ++l) {
    const sparse::LayerFitReport& r = reports[l];
    std::printf("%5zu  %4zu  %6.4f  %9.4f  %9.4f  %6.4f\n", l, r.rank, r.recall, r.precision, r.predicted_fraction,
                r.true_fraction);
    recall += r.recall;
    precision += r.precision;
    predicted += r.predicted_fraction;
    truth += r.true_fraction;
  }
  const double n = static_cast<double>(reports.size());
  spec.predictor_recall = static_cast<float>(recall / n);
  spec.predictor_precision = static_cast<float>(precision / n);
  sparse::write_pi2(*tgt, c, spec, o.out, &pool);
  std::printf("%s: predictors stored: mean recall %.4f, precision %.4f, %.1f%% of neurons predicted for %.1f%% active, "
              "%.1f s\n",
              o.out.c_str(), recall / n, precision / n, 100.0 * predicted / n, 100.0 * truth / n, sw.elapsed_s());
}

}  // namespace

void register_convert(common::CliApp& cli) {
  {
    auto o = std::make_shared<PrepOptions>();
    CLI::App* cmd = cli.add_command("convert", "Convert a ReGLU/dReLU GGUF model to the sparse engine's bundle file",
                                    [o] { run_convert(*o); });
    cmd->add_option("-m,--model", o->model, "GGUF model (dense FFN matrices, or a converted file to re-cluster)")->required();
    cmd->add_option("-o,--output", o->out, "Converted file to write (.pi2.gguf)")->required();
    cmd->add_option("--cluster-size", o->cluster_size, "Neurons per cluster (one read; default 32, or the input's)");
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str();
  }
  for (const bool train : {false, true}) {
    auto o = std::make_shared<PrepOptions>();
    CLI::App* cmd =
        train ? cli.add_command("train-predictor",
                                "Train the per-layer activation predictors on recorded activations and store them",
                                [o] { run_train(*o); })
              : cli.add_command("profile-activations",
                                "Record per-neuron activation frequency and sort the converted file's neurons by it",
                                [o] { run_profile(*o); });
    cmd->add_option("-m,--model", o->model, "The original GGUF model (its dense engine runs)")->required();
    cmd->add_option("-f,--file", o->text, "Text to run");
    cmd->add_option("--random-tokens", o->random_tokens,
                    "Run N pseudo-random token ids of the whole vocabulary instead of a text (synthetic models, "
                    "whose byte-level vocabulary a text covers only a hundred ids of)");
    cmd->add_option("-o,--output", o->out, "Converted file to update (created by converting -m when absent)")->required();
    cmd->add_option("--max-tokens", o->max_tokens, "Tokens of the text to use")->capture_default_str();
    cmd->add_option("--window", o->window, "Tokens per forward window (each from position 0)")->capture_default_str();
    cmd->add_option("--cluster-size", o->cluster_size, "Neurons per cluster when converting");
    cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str();
    if (train) {
      cmd->add_option("--samples", o->samples, "Tokens whose FFN inputs train the predictors")->capture_default_str();
      cmd->add_option("--recall", o->recall, "Held-out recall target")->capture_default_str()->check(CLI::Range(0.5, 1.0));
      cmd->add_option("--max-rank", o->max_rank, "Largest predictor rank (0: dim / 16)")->capture_default_str();
    }
  }
}

}  // namespace powerinfer2::cli
