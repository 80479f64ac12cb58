// `powerinfer2-cli bench -m MODEL -p 512 -n 128 -t 2 [-r REPS] [--json]`: prefill (pp) and
// decode (tg) throughput of the dense engine, mean ± stddev over repetitions (llama-bench).
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/rss.hpp"
#include "common/thread_pool.hpp"
#include "engine/bench.hpp"
#include "engine/runtime.hpp"
#include "io/gguf_types.hpp"
#include "model/model.hpp"
#include "sparse_cli.hpp"

namespace powerinfer2::cli {

namespace {

struct BenchOptions {
  std::string model;
  std::size_t n_prompt = 512;
  std::size_t n_gen = 128;
  std::size_t threads = 2;
  std::size_t reps = 5;
  bool json = false;
  SparseCliOptions sparse;
};

void run_bench(const BenchOptions& o) {
  if (o.reps == 0) throw common::UsageError("-r must be at least 1");
  // Like llama-bench: a context of p + n tokens (at most the model's), not the model's full
  // context (32768 for Mistral-7B: an 8 GiB F32 KV cache).
  const std::size_t need = std::max<std::size_t>(1, o.n_prompt + o.n_gen);
  std::size_t n_ctx = need;
  {
    const io::GgufFile probe(o.model);
    n_ctx = std::min<std::size_t>(need, model::load_config(probe).n_ctx);
  }
  engine::Runtime rt(o.model, runtime_options(o.sparse, o.threads, n_ctx));
  const model::Model& model = rt.model;
  common::ThreadPool& pool = rt.pool;
  // Prefill and decode measured apart, so that the sparse statistics are the decode's.
  engine::BenchResult r = engine::bench(rt.forward, o.n_prompt, 0, o.reps);
  if (rt.sparse) rt.sparse->reset_stats();
  r.decode = engine::bench(rt.forward, 0, o.n_gen, o.reps).decode;
  r.peak_rss_bytes = common::peak_rss_bytes();
  if (o.json) {
    nlohmann::ordered_json j;
    j["model"] = o.model;
    j["weight_type"] = std::string(io::ggml_type_name(model.weights.layers.at(0).wq.type));
    j["threads"] = pool.size();
    j["n_prompt"] = o.n_prompt;
    j["n_gen"] = o.n_gen;
    j["reps"] = o.reps;
    j["prefill_tok_s"] = r.prefill.mean_tok_s;
    j["prefill_tok_s_stddev"] = r.prefill.stddev_tok_s;
    j["decode_tok_s"] = r.decode.mean_tok_s;
    j["decode_tok_s_stddev"] = r.decode.stddev_tok_s;
    j["peak_rss_bytes"] = r.peak_rss_bytes;
    sparse_stats_json(rt, j);
    std::cout << j.dump() << '\n' << std::flush;
  } else {
    char line[512];
    std::snprintf(line, sizeof line,
                  "| model | type | threads | test | t/s |\n| --- | --- | ---: | ---: | ---: |\n"
                  "| %s | %s | %zu | pp%zu | %.2f ± %.2f |\n| %s | %s | %zu | tg%zu | %.2f ± %.2f |\npeak RSS %.1f MiB\n",
                  o.model.c_str(), std::string(io::ggml_type_name(model.weights.layers.at(0).wq.type)).c_str(),
                  pool.size(), o.n_prompt, r.prefill.mean_tok_s, r.prefill.stddev_tok_s, o.model.c_str(),
                  std::string(io::ggml_type_name(model.weights.layers.at(0).wq.type)).c_str(), pool.size(), o.n_gen,
                  r.decode.mean_tok_s, r.decode.stddev_tok_s, static_cast<double>(r.peak_rss_bytes) / (1024.0 * 1024.0));
    std::cout << line << sparse_stats_text(rt) << std::flush;
  }
  if (!std::cout) throw common::IoError("<stdout>", "write", "the stream failed");
}

}  // namespace

void register_bench(common::CliApp& cli) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* cmd = cli.add_command("bench", "Measure prefill and decode tokens/s (dense model, or converted sparse model)",
                                  [o] { run_bench(*o); });
  cmd->add_option("-m,--model", o->model, "GGUF model")->required();
  cmd->add_option("-p,--n-prompt", o->n_prompt, "Prompt tokens (pp test; 0: skip)")->capture_default_str();
  cmd->add_option("-n,--n-gen", o->n_gen, "Generated tokens (tg test; 0: skip)")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (0: all hardware threads)")->capture_default_str();
  cmd->add_option("-r,--repetitions", o->reps, "Timed repetitions")->capture_default_str();
  cmd->add_flag("--json", o->json, "Print one JSON object");
  add_sparse_options(cmd, o->sparse);
}

}  // namespace powerinfer2::cli
