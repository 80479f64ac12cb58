// make-model --preset tiny|1b|7b --type f32|f16|q8_0|q4_0 --activation swiglu|reglu|drelu
//            --seed S [--sparsity S] [--hot-fraction H] [--vocab FILE.gguf] [--layers N] [--ctx N]
//            [-t THREADS] -o OUT.gguf
// Writes a llama GGUF of a preset's shape with random weights, deterministic by seed
// (model_maker.hpp describes the scheme), and a SentencePiece vocabulary: byte-level by
// default, or the tokenizer.* keys copied from --vocab.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>

#include "common/cli.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "common/units.hpp"
#include "io/gguf_types.hpp"
#include "model_maker.hpp"

namespace {

namespace pw = powerinfer2;

struct Options {
  std::string preset, type = "f16", activation = "swiglu", vocab, output;
  std::uint64_t seed = 1;
  std::optional<double> sparsity;  // default: 0.9 for reglu/drelu, 0 for swiglu
  double hot_fraction = 0.2;
  std::uint32_t layers = 0, ctx = 0;  // 0: the preset's
  std::size_t threads = 0;
};

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

pw::io::GgmlType parse_type(const std::string& name) {
  using pw::io::GgmlType;
  const std::optional<GgmlType> t = pw::io::ggml_type_from_name(name);
  if (t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::Q8_0 || t == GgmlType::Q4_0) return *t;
  throw common::UsageError("unknown --type '" + name + "'; expected one of: f32, f16, q8_0, q4_0");
}

pw::model::FfnActivation parse_activation(const std::string& name) {
  const std::string n = lower(name);
  if (n == "swiglu") return pw::model::FfnActivation::swiglu;
  if (n == "reglu") return pw::model::FfnActivation::reglu;
  if (n == "drelu") return pw::model::FfnActivation::drelu;
  throw common::UsageError("unknown --activation '" + name + "'; expected one of: swiglu, reglu, drelu");
}

void run(const Options& o) {
  const pw::tools::ModelShape* preset = pw::tools::find_preset(o.preset);
  if (preset == nullptr)
    throw common::UsageError("unknown --preset '" + o.preset + "'; expected one of: " + pw::tools::preset_names());
  pw::tools::MakeModelOptions m;
  m.shape = *preset;
  if (o.layers != 0) m.shape.n_layer = o.layers;
  if (o.ctx != 0) m.shape.n_ctx = o.ctx;
  m.type = parse_type(o.type);
  m.activation = parse_activation(o.activation);
  m.seed = o.seed;
  m.sparsity = o.sparsity.value_or(m.activation == pw::model::FfnActivation::swiglu ? 0.0 : 0.9);
  m.hot_fraction = o.hot_fraction;
  m.vocab_path = o.vocab;
  common::ThreadPool pool(o.threads);
  common::Stopwatch clock;
  const pw::tools::MakeModelResult r = pw::tools::make_model(m, o.output, pool);
  for (const std::string& name : r.kept_f16)
    common::log_info("kept ", name, " in F16: its rows are not a multiple of 32");
  const double s = clock.elapsed_s();
  const double params = static_cast<double>(r.n_params);
  char line[160];
  std::snprintf(line, sizeof line, "%zu tensors, %.2f %s parameters, %s in %.1f s (%.0f MB/s, %zu threads)",
                r.n_tensors, params >= 1e9 ? params * 1e-9 : params * 1e-6, params >= 1e9 ? "G" : "M",
                common::format_size(r.tensor_bytes).c_str(), s, static_cast<double>(r.tensor_bytes) / s * 1e-6,
                pool.size());
  common::log_info("wrote ", o.output, ": ", m.shape.name, " ", lower(o.type), " ", lower(o.activation), " seed ",
                   o.seed, ", vocab ", r.config.vocab, ", context ", r.config.n_ctx, "; ", line);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  common::CliApp cli("make-model",
                     "Write a llama GGUF model of a preset shape with random weights, deterministic by seed.");
  CLI::App& app = cli.app();
  app.add_option("--preset", o.preset, "Model shape: " + pw::tools::preset_names())->required();
  app.add_option("--type", o.type, "Weight type: f32, f16, q8_0, q4_0 (norms are always F32)")->capture_default_str();
  app.add_option("--activation", o.activation, "FFN activation: swiglu, reglu, drelu")->capture_default_str();
  app.add_option("--seed", o.seed, "Random seed (the same seed gives the same bytes)")->capture_default_str();
  app.add_option("--sparsity", o.sparsity,
                 "Fraction of FFN neurons zero per token (reglu/drelu; default 0.9; 0: plain random weights)");
  app.add_option("--hot-fraction", o.hot_fraction, "Fraction of neurons carrying 80% of the firings")
      ->capture_default_str();
  app.add_option("--vocab", o.vocab, "Copy the vocabulary (tokenizer.* keys) from this GGUF file");
  app.add_option("--layers", o.layers, "Override the preset's layer count");
  app.add_option("--ctx", o.ctx, "Override the preset's context length (llama.context_length)");
  app.add_option("-t,--threads", o.threads, "Threads (0: one per hardware thread)")->capture_default_str();
  app.add_option("-o,--output", o.output, "GGUF file to write")->required();
  cli.set_main([&] { run(o); });
  return cli.run(argc, argv);
}
