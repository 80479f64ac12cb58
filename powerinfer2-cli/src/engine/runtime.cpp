#include "engine/runtime.hpp"

#include <cmath>

#include "common/cuda.hpp"
#include "common/errors.hpp"

namespace powerinfer2::engine {

namespace {
std::size_t context_of(const Model& m, std::size_t n_ctx) {
  if (n_ctx > m.config.n_ctx)
    throw common::UsageError("-c " + std::to_string(n_ctx) + ": the model's context is " + std::to_string(m.config.n_ctx),
                             "give at most " + std::to_string(m.config.n_ctx) + " (0: the model's context)");
  return n_ctx;
}
}  // namespace

std::uint64_t budget_for_offload(const sparse::Pi2Model& m, std::uint64_t fixed_bytes, double offload) {
  if (!(offload >= 0.0 && offload <= 1.0))
    throw common::UsageError("--offload-ffn must be in [0, 1], got " + std::to_string(offload));
  const std::uint64_t ffn = m.ffn_bytes();
  if (offload == 0.0) return fixed_bytes + ffn;
  const auto resident = static_cast<std::uint64_t>(std::floor(static_cast<double>(ffn) * (1.0 - offload)));
  return fixed_bytes + m.geo.layer_bytes() + resident;  // + the stream buffer
}

Runtime::Runtime(const std::string& path, const RuntimeOptions& o)
    : pool(o.threads), model(path, &pool), forward(model, pool, context_of(model, o.n_ctx)) {
  bool use_gpu = o.device == Device::cuda;
  if (o.device == Device::automatic) use_gpu = common::cuda::device_count() > 0;
  if (use_gpu) {
    const std::string missing = common::cuda::no_device_message();
    if (!missing.empty()) throw common::UsageError("--device cuda: " + missing, "use --device cpu or auto");
    const common::cuda::DeviceInfo info = common::cuda::device_info();
    gpu_name = info.name;
    gpu_memory_budget = o.gpu_memory_bytes > 0 ? o.gpu_memory_bytes : info.free_memory_bytes / 10 * 9;
    if (gpu_memory_budget > info.free_memory_bytes)
      throw common::UsageError("--gpu-memory " + std::to_string(gpu_memory_budget >> 20) + " MiB: " + info.name +
                               " has " + std::to_string(info.free_memory_bytes >> 20) + " MiB free");
    gpu = std::make_unique<GpuProducts>(model, forward.max_batch(), forward.n_ctx(), gpu_memory_budget);
    forward.set_product_offload(gpu.get());
  } else if (o.gpu_memory_bytes > 0 && o.device == Device::cpu) {  // auto without a device: ignored
    throw common::UsageError("--gpu-memory needs --device cuda or auto");
  }
  if (!model.pi2) {
    if (o.offload_ffn || o.sparse.memory_budget_bytes != 0 || o.sparse.oracle ||
        o.sparse.mode != sparse::EngineMode::automatic)
      throw common::UsageError(path + " is a dense model: --memory-budget, --offload-ffn, --mode and --oracle-predictor "
                                      "need a converted sparse model",
                               "run powerinfer2-cli convert -m " + path + " -o MODEL.pi2.gguf");
    return;
  }
  if (o.offload_ffn && o.sparse.memory_budget_bytes != 0)
    throw common::UsageError("give --memory-budget or --offload-ffn, not both");
  const std::uint64_t fixed =
      sparse::fixed_segment_bytes(model, forward.state_bytes(), forward.max_batch(), pool.size());
  sparse::SparseOptions so = o.sparse;
  if (o.offload_ffn) so.memory_budget_bytes = budget_for_offload(*model.pi2, fixed, *o.offload_ffn);
  // The GPU's memory after the attention matrices goes to the hottest neuron clusters.
  if (gpu) so.gpu_memory_bytes = gpu_memory_budget - gpu->device_bytes();
  sparse = std::make_unique<sparse::SparseFfn>(model, pool, so, fixed, forward.max_batch());
  forward.set_ffn_backend(sparse.get());
}

}  // namespace powerinfer2::engine
