// What generate and bench run: the model, the thread pool, the forward pass and, for a
// converted sparse model (.pi2.gguf), the sparse FFN engine under the memory budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "common/thread_pool.hpp"
#include "model/forward.hpp"
#include "model/gpu_offload.hpp"
#include "model/model.hpp"
#include "sparse/sparse_ffn.hpp"

namespace powerinfer2::engine {

/// Where the dense side runs: cpu, cuda (an error without a device) or auto (cuda when a
/// device is present).
enum class Device { cpu, cuda, automatic };

struct RuntimeOptions {
  std::size_t threads = 2;
  std::size_t n_ctx = 0;         // 0: the model's
  sparse::SparseOptions sparse;  // the memory budget (sparse.budget) included
  Device device = Device::cpu;
  /// Device memory the engine may take (0: 90% of what is free): the layers' matrices for
  /// prompts, then (a sparse model) the most frequently active neuron clusters. Unused on the CPU.
  std::uint64_t gpu_memory_bytes = 0;
};

class Runtime {
 public:
  /// Loads `path`; UsageError for sparse options on a dense model, a context longer than the
  /// model's, a missing device, or a budget that cannot hold the fixed segment (with the numbers).
  Runtime(const std::string& path, const RuntimeOptions& o);
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// The process's resident set before the engine is built (code, libraries, runtime): the
  /// first part of the memory budget's fixed segment. Measured first, before the members below.
  std::uint64_t program_bytes = 0;
  common::ThreadPool pool;
  model::Model model;
  model::Forward forward;
  std::unique_ptr<model::GpuProducts> gpu;    // set when the dense side runs on the GPU
  std::unique_ptr<sparse::SparseFfn> sparse;  // set for a .pi2.gguf model
  std::string gpu_name;                       // the device, when gpu is set
  std::uint64_t gpu_memory_budget = 0;        // bytes the engine could take on it
};

}  // namespace powerinfer2::engine
