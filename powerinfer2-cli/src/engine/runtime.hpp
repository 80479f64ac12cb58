// What generate and bench run: the model, the thread pool, the forward pass and, for a
// converted sparse model (.pi2.gguf), the sparse FFN engine under the memory budget.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/thread_pool.hpp"
#include "engine/forward.hpp"
#include "engine/model.hpp"
#include "sparse/sparse_ffn.hpp"

namespace powerinfer2::engine {

struct RuntimeOptions {
  std::size_t threads = 2;
  std::size_t n_ctx = 0;  // 0: the model's
  sparse::SparseOptions sparse;
  /// Shorthand for the budget: leave this fraction (0..1) of the FFN weights on storage.
  std::optional<double> offload_ffn;
};

class Runtime {
 public:
  /// Loads `path`; UsageError for sparse options on a dense model or a budget that cannot hold
  /// the fixed segment (with the numbers).
  Runtime(const std::string& path, const RuntimeOptions& o);
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  common::ThreadPool pool;
  Model model;
  Forward forward;
  std::unique_ptr<sparse::SparseFfn> sparse;  // set for a .pi2.gguf model
};

/// The budget that leaves `offload` of the FFN on storage: everything resident but that share.
std::uint64_t budget_for_offload(const sparse::Pi2Model& m, std::uint64_t fixed_bytes, double offload);

}  // namespace powerinfer2::engine
