// The sparse engine's options and statistics, shared by generate and bench.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "common/cli.hpp"
#include "engine/runtime.hpp"

namespace powerinfer2::cli {

struct SparseCliOptions {
  std::string memory_budget;  // "4GiB"
  double offload_ffn = -1.0;  // < 0: not given
  std::string mode = "auto";
  std::string io_backend;     // "", io_uring, pread
  std::string plan;           // plan.json from `plan`
  std::string device = "cpu"; // cpu, cuda, auto
  std::string gpu_memory;     // "20GiB"
  engine::RuntimeOptions runtime;
};

/// Adds --memory-budget, --offload-ffn, --mode, --oracle-predictor, --measure-recall, the
/// ablation switches and the I/O settings to `cmd`.
void add_sparse_options(CLI::App* cmd, SparseCliOptions& o);

/// RuntimeOptions with the parsed budget, mode and backend (UsageError for bad values).
engine::RuntimeOptions runtime_options(const SparseCliOptions& o, std::size_t threads, std::size_t n_ctx);

/// The sparse statistics as JSON keys (nothing for a dense model), per token over `tokens`.
void sparse_stats_json(const engine::Runtime& rt, nlohmann::ordered_json& j);
/// The same as text lines (empty for a dense model).
std::string sparse_stats_text(const engine::Runtime& rt);

}  // namespace powerinfer2::cli
