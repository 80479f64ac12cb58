// The offline planner: measures this machine (storage read bandwidth by request size and
// queue depth, the sparse engine's decode speed) for a converted model and a memory budget,
// and chooses the settings the engine runs with: the hot/cold split of the budget, the read
// queue depth, and the cluster size to convert with (from the model's activation profile and
// the measured bandwidth: expected storage time per token for every candidate size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "sparse/memory_plan.hpp"

namespace powerinfer2::prep {

struct ReadPoint {
  std::size_t request_bytes = 0;
  unsigned queue_depth = 0;
  double bytes_per_s = 0.0, iops = 0.0;
};

struct ClusterChoice {
  std::size_t cluster_size = 0, cluster_bytes = 0;
  double misses_per_token = 0.0;    // expected cluster reads per token (activation profile)
  double read_ms_per_token = 0.0;   // at the measured bandwidth for that read size
};

struct Trial {
  double hot_share = 0.0;
  unsigned queue_depth = 0;
  double decode_tok_s = 0.0;
};

struct Plan {
  std::string model;
  std::uint64_t memory_budget_bytes = 0;  // 0: unlimited
  std::size_t threads = 2;
  double hot_share = 0.85;
  unsigned queue_depth = 64;
  std::size_t cluster_size = 0;              // the file's
  std::size_t recommended_cluster_size = 0;  // convert --cluster-size for this budget and storage
  std::string io_backend;
  double memory_bytes_per_s = 0.0;   // streaming read of a 256 MiB buffer, all threads
  double neuron_ns = 0.0;            // one bundle computed (gate and up dots, down axpy), one thread
  std::vector<ReadPoint> reads;
  std::vector<ClusterChoice> clusters;
  std::vector<Trial> trials;
};

struct PlanOptions {
  sparse::MemoryBudget budget;
  std::size_t threads = 2;
  std::size_t n_ctx = 256;
  std::size_t trial_tokens = 6;
  std::uint64_t read_bytes_per_point = 32ull << 20;
};

/// Measures and chooses (several seconds to a minute: each trial loads the hot segment).
Plan make_plan(const std::string& model_path, const PlanOptions& o);

std::string plan_to_json(const Plan& p);
/// Reads a plan (InputError naming the file and member for anything malformed).
Plan load_plan(const std::string& path);

}  // namespace powerinfer2::prep
