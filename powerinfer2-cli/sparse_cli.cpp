#include "sparse_cli.hpp"

#include <cstdio>

#include "common/cuda.hpp"
#include "common/errors.hpp"
#include "common/units.hpp"
#include "prep/planner.hpp"

namespace powerinfer2::cli {

void add_sparse_options(CLI::App* cmd, SparseCliOptions& o) {
  sparse::SparseOptions& s = o.runtime.sparse;
  add_budget_options(cmd, s.budget);
  cmd->add_option("--mode", o.mode, "Decode path: auto (sparse when a predictor exists), dense or sparse; prompts always run dense")->capture_default_str();
  cmd->add_flag("--oracle-predictor", s.oracle, "Exact active neurons, computed densely (correctness checks)");
  cmd->add_flag("--measure-recall", s.measure_recall, "Also compute the exact active sets: predictor recall");
  cmd->add_flag("!--no-pipeline", s.pipeline, "Ablation: wait for all reads of a layer before computing");
  cmd->add_flag("!--no-cold-cache", s.cold_cache, "Ablation: keep only the hot segment (misses read every token)");
  cmd->add_flag("!--no-hot-segment", s.segmented, "Ablation: one LRU over all clusters, no frequency-based hot segment");
  cmd->add_option("--hot-share", s.hot_share,
                  "Share of the FFN budget for the hot segment (default: 1.0 with an activation profile, else 0.85)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--queue-depth", s.queue_depth, "Storage reads in flight")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--io-backend", o.io_backend, "io_uring or pread (default: io_uring when available)");
  cmd->add_option("--plan", o.plan, "Settings chosen by `powerinfer2-cli plan` (hot share, queue depth, budget)");
  cmd->add_option("--device", o.device,
                  "cpu, cuda (prompt products on the GPU; a sparse model's hottest neurons there too) or auto")
      ->capture_default_str()
      ->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  common::add_size_option(cmd, "--gpu-memory", o.gpu_memory_bytes,
                          "GPU memory the engine may take (e.g. 8GiB; default: 90% of the free memory; ignored when "
                          "--device auto finds no device)");
}

void add_budget_options(CLI::App* cmd, sparse::MemoryBudget& b) {
  CLI::Option* bytes =
      common::add_size_option(cmd, "--memory-budget", b.bytes,
                              "Sparse model: memory for weights, KV cache and buffers (e.g. 3GiB; default: unlimited)");
  cmd->add_option_function<double>(
         "--offload-ffn", [&b](double share) { b.offload_ffn = share; },
         "Sparse model: leave this fraction (0..1) of the FFN weights on storage (sets the budget)")
      ->type_name("FLOAT")
      ->excludes(bytes);
}

engine::RuntimeOptions runtime_options(const SparseCliOptions& o, std::size_t threads, std::size_t n_ctx) {
  engine::RuntimeOptions r = o.runtime;
  r.threads = threads;
  r.n_ctx = n_ctx;
  if (!o.plan.empty()) {  // the plan's choices; explicit --memory-budget / --offload-ffn win
    const prep::Plan p = prep::load_plan(o.plan);
    r.sparse.hot_share = p.hot_share;
    r.sparse.queue_depth = p.queue_depth;
    if (!r.sparse.budget.limited() && p.memory_budget_bytes != 0) r.sparse.budget.bytes = p.memory_budget_bytes;
  }
  r.device = o.device == "cuda" ? engine::Device::cuda : o.device == "auto" ? engine::Device::automatic : engine::Device::cpu;
  if (r.device == engine::Device::cuda) {
    const std::string missing = common::cuda::no_device_message();
    if (!missing.empty()) throw common::UsageError("--device cuda: " + missing, "use --device cpu or auto");
  }
  if (o.gpu_memory_bytes) {
    if (*o.gpu_memory_bytes == 0) throw common::UsageError("--gpu-memory must be more than 0");
    if (r.device == engine::Device::cpu) throw common::UsageError("--gpu-memory needs --device cuda or auto");
    r.gpu_memory_bytes = *o.gpu_memory_bytes;
  }
  if (o.mode == "auto")
    r.sparse.mode = sparse::EngineMode::automatic;
  else if (o.mode == "dense")
    r.sparse.mode = sparse::EngineMode::dense;
  else if (o.mode == "sparse")
    r.sparse.mode = sparse::EngineMode::sparse;
  else
    throw common::UsageError("--mode " + o.mode + ": expected auto, dense or sparse");
  if (o.io_backend == "io_uring")
    r.sparse.backend = io::ReadBackend::io_uring;
  else if (o.io_backend == "pread")
    r.sparse.backend = io::ReadBackend::pread_pool;
  else if (!o.io_backend.empty())
    throw common::UsageError("--io-backend " + o.io_backend + ": expected io_uring or pread");
  return r;
}

namespace {
struct Derived {
  double tokens, hit_rate, hot_rate, cold_rate, bytes_per_token, stall_ms, precision, recall;
};
Derived derive(const sparse::SparseStats& s) {
  Derived d{};
  d.tokens = static_cast<double>(s.sparse_tokens + s.dense_tokens);
  const double clusters = static_cast<double>(s.hot_hits + s.cold_hits + s.misses);
  d.hit_rate = clusters > 0 ? static_cast<double>(s.hot_hits + s.cold_hits) / clusters : 1.0;
  d.hot_rate = clusters > 0 ? static_cast<double>(s.hot_hits) / clusters : 0.0;
  const double not_hot = static_cast<double>(s.cold_hits + s.misses);
  d.cold_rate = not_hot > 0 ? static_cast<double>(s.cold_hits) / not_hot : 0.0;
  d.bytes_per_token = d.tokens > 0 ? static_cast<double>(s.bytes_read) / d.tokens : 0.0;
  d.stall_ms = d.tokens > 0 ? s.stall_s * 1000.0 / d.tokens : 0.0;
  d.precision = s.predicted_neurons > 0 ? static_cast<double>(s.active_neurons) / static_cast<double>(s.predicted_neurons) : -1.0;
  d.recall = s.true_neurons > 0 ? static_cast<double>(s.found_neurons) / static_cast<double>(s.true_neurons) : -1.0;
  return d;
}
}  // namespace

void sparse_stats_json(const engine::Runtime& rt, nlohmann::ordered_json& j) {
  j["device"] = rt.gpu ? "cuda" : "cpu";
  if (rt.gpu) {
    j["gpu_name"] = rt.gpu_name;
    j["gpu_memory_budget_bytes"] = rt.gpu_memory_budget;
    j["gpu_product_bytes"] = rt.gpu->device_bytes();
    j["gpu_layers"] = rt.gpu->resident_layers();
  }
  if (!rt.sparse) return;
  const sparse::MemoryPlan& p = rt.sparse->plan();
  const sparse::SparseStats& s = rt.sparse->stats();
  const Derived d = derive(s);
  j["memory_budget_bytes"] = p.budget;
  j["offload_ffn"] = p.offloaded_fraction();
  j["fixed_bytes"] = p.fixed;
  j["program_bytes"] = rt.sparse->fixed_segment().program;
  j["hot_bytes"] = p.hot;
  j["cold_bytes"] = p.cold;
  j["stream_bytes"] = p.stream;
  j["io_backend"] = rt.sparse->io_description();
  j["sparse_decode"] = rt.sparse->sparse_decode();
  j["bytes_read_per_token"] = d.bytes_per_token;
  j["cache_hit_rate"] = d.hit_rate;
  j["hot_hit_rate"] = d.hot_rate;
  j["cold_hit_rate"] = d.cold_rate;
  j["io_stall_ms_per_token"] = d.stall_ms;
  j["neurons_computed_per_token"] = d.tokens > 0 ? static_cast<double>(s.predicted_neurons) / d.tokens : 0.0;
  if (d.precision >= 0) j["predictor_precision"] = d.precision;
  if (d.recall >= 0) j["predictor_recall"] = d.recall;
  j["hot_load_s"] = s.load_s;
  if (rt.gpu) {
    j["gpu_ffn_bytes"] = p.gpu;
    j["gpu_ffn_share"] = p.ffn_total > 0 ? static_cast<double>(p.gpu) / static_cast<double>(p.ffn_total) : 0.0;
    j["gpu_wait_ms_per_token"] = d.tokens > 0 ? s.gpu_wait_s * 1000.0 / d.tokens : 0.0;
    j["gpu_load_s"] = s.gpu_load_s;
  }
}

std::string sparse_stats_text(const engine::Runtime& rt) {
  std::string gpu;
  if (rt.gpu) {
    char g[512];
    std::snprintf(g, sizeof g, "gpu: %s | %zu of %u layers' products there (%.1f MiB)", rt.gpu_name.c_str(),
                  rt.gpu->resident_layers(), rt.model.config.n_layer,
                  static_cast<double>(rt.gpu->device_bytes()) / (1024.0 * 1024.0));
    gpu = g;
    if (rt.sparse) {
      const sparse::MemoryPlan& p = rt.sparse->plan();
      std::snprintf(g, sizeof g, " | hottest %.1f%% of the FFN (%.1f MiB)",
                    p.ffn_total > 0 ? 100.0 * static_cast<double>(p.gpu) / static_cast<double>(p.ffn_total) : 0.0,
                    static_cast<double>(p.gpu) / (1024.0 * 1024.0));
      gpu += g;
    }
    gpu += "\n";
  }
  if (!rt.sparse) return gpu;
  const sparse::MemoryPlan& p = rt.sparse->plan();
  const sparse::SparseStats& s = rt.sparse->stats();
  const Derived d = derive(s);
  auto mib = [](std::uint64_t b) { return static_cast<double>(b) / (1024.0 * 1024.0); };
  char line[768];
  std::snprintf(line, sizeof line,
                "sparse: budget %s | fixed %.1f MiB, hot %.1f MiB, cold %.1f MiB, stream %.1f MiB (%.0f%% of FFN offloaded) | "
                "%s\nsparse: hit rate %.3f (hot %.3f, cold %.3f) | read %.2f MiB/token | I/O stall %.2f ms/token",
                p.budget == 0 ? "unlimited" : common::format_size(p.budget).c_str(), mib(p.fixed), mib(p.hot), mib(p.cold),
                mib(p.stream), 100.0 * p.offloaded_fraction(), rt.sparse->io_description().c_str(), d.hit_rate, d.hot_rate,
                d.cold_rate, d.bytes_per_token / (1024.0 * 1024.0), d.stall_ms);
  std::string out = line;
  if (d.precision >= 0) {
    std::snprintf(line, sizeof line, " | precision %.3f", d.precision);
    out += line;
  }
  if (d.recall >= 0) {
    std::snprintf(line, sizeof line, " | recall %.4f", d.recall);
    out += line;
  }
  return gpu + out + "\n";
}

}  // namespace powerinfer2::cli
