// `powerinfer2-cli generate -m MODEL -p PROMPT -n N [--temp T] [--top-k K] [--top-p P] [-s SEED]
// [-t THREADS] [--json]`: text streams to stdout as it is generated (flushed per token), the
// statistics go to stderr at the end; with --json one object on stdout instead.
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/thread_pool.hpp"
#include "engine/generate.hpp"
#include "engine/runtime.hpp"
#include "model/forward.hpp"
#include "model/model.hpp"
#include "sparse_cli.hpp"

namespace powerinfer2::cli {

namespace {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  std::size_t n_predict = 128;
  engine::SamplerParams sampling;
  std::size_t threads = 2;
  std::size_t n_ctx = 0;
  bool json = false;
  SparseCliOptions sparse;
};

void run_generate(const GenerateOptions& o) {
  engine::Runtime rt(o.model, runtime_options(o.sparse, o.threads, o.n_ctx));
  const model::Model& model = rt.model;
  model::Forward& forward = rt.forward;
  engine::Sampler sampler(o.sampling, model.config.vocab);
  std::function<void(std::string_view)> stream;
  if (!o.json)
    stream = [](std::string_view piece) {
      std::cout.write(piece.data(), static_cast<std::streamsize>(piece.size()));
      std::cout.flush();
    };
  const engine::GenerateResult r = engine::generate(model, forward, o.prompt, o.n_predict, sampler, stream);
  const engine::GenerateStats& s = r.stats;
  if (o.json) {
    nlohmann::ordered_json j;
    j["text"] = r.text;
    j["tokens"] = r.tokens;
    j["prompt_tokens"] = s.prompt_tokens;
    j["generated_tokens"] = s.generated_tokens;
    j["prefill_tok_s"] = s.prefill_tok_s;
    j["decode_tok_s"] = s.decode_tok_s;
    j["ttft_ms"] = s.ttft_ms;
    j["peak_rss_bytes"] = s.peak_rss_bytes;
    sparse_stats_json(rt, j);
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n' << std::flush;
  } else {
    std::cout << '\n' << std::flush;  // the text ends with a newline, as llama2.c prints
    char line[256];
    std::snprintf(line, sizeof line,
                  "prompt: %zu tokens, %.2f tok/s | decode: %zu tokens, %.2f tok/s | ttft %.2f ms | peak RSS %.1f MiB\n",
                  s.prompt_tokens, s.prefill_tok_s, s.generated_tokens, s.decode_tok_s, s.ttft_ms,
                  static_cast<double>(s.peak_rss_bytes) / (1024.0 * 1024.0));
    std::cerr << line << sparse_stats_text(rt);
  }
  if (!std::cout) throw common::IoError("<stdout>", "write", "the stream failed");
}

}  // namespace

void register_generate(common::CliApp& cli) {
  auto o = std::make_shared<GenerateOptions>();
  CLI::App* cmd = cli.add_command("generate", "Generate text from a prompt (dense model, or converted sparse model)",
                                  [o] { run_generate(*o); });
  cmd->add_option("-m,--model", o->model, "GGUF model")->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt (empty: BOS only)");
  cmd->add_option("-n,--n-predict", o->n_predict, "Tokens to generate")->capture_default_str();
  cmd->add_option("--temp", o->sampling.temperature, "Temperature (0: greedy)")->capture_default_str();
  cmd->add_option("--top-k", o->sampling.top_k, "Keep the k most likely tokens (0: all)")->capture_default_str();
  cmd->add_option("--top-p", o->sampling.top_p, "Nucleus: smallest set reaching probability p (1: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0f, 1.0f));
  cmd->add_option("-s,--seed", o->sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (0: all hardware threads)")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->n_ctx, "Context (KV cache) length in tokens (0: the model's context)")
      ->capture_default_str();
  cmd->add_flag("--json", o->json, "Print one JSON object (text, tokens, statistics) instead");
  add_sparse_options(cmd, o->sparse);
}

}  // namespace powerinfer2::cli
