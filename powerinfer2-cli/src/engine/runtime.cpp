#include "engine/runtime.hpp"

#include "common/cuda.hpp"
#include "common/errors.hpp"
#include "common/rss.hpp"

namespace powerinfer2::engine {

namespace {
std::size_t context_of(const model::Model& m, std::size_t n_ctx) {
  if (n_ctx > m.config.n_ctx)
    throw common::SettingError("ctx-size",
                               std::to_string(n_ctx) + ": the model's context is " + std::to_string(m.config.n_ctx),
                               "give at most " + std::to_string(m.config.n_ctx) + " (0: the model's context)");
  return n_ctx;
}
}  // namespace

Runtime::Runtime(const std::string& path, const RuntimeOptions& o)
    : program_bytes(common::current_rss_bytes()), pool(o.threads), model(path, &pool), forward(model, pool, context_of(model, o.n_ctx)) {
  bool use_gpu = o.device == Device::cuda;
  if (o.device == Device::automatic) use_gpu = common::cuda::device_count() > 0;
  if (use_gpu) {
    const std::string missing = common::cuda::no_device_message();
    if (!missing.empty()) throw common::UsageError("the CUDA device: " + missing, "run on the CPU");
    const common::cuda::DeviceInfo info = common::cuda::device_info();
    gpu_name = info.name;
    gpu_memory_budget = o.gpu_memory_bytes > 0 ? o.gpu_memory_bytes : info.free_memory_bytes / 10 * 9;
    if (gpu_memory_budget > info.free_memory_bytes)
      throw common::UsageError("GPU memory of " + std::to_string(gpu_memory_budget >> 20) + " MiB asked: " + info.name +
                               " has " + std::to_string(info.free_memory_bytes >> 20) + " MiB free");
    gpu = std::make_unique<model::GpuProducts>(model, forward.max_batch(), forward.n_ctx(), gpu_memory_budget);
    forward.set_product_offload(gpu.get());
  }
  if (!model.pi2) {
    if (o.sparse.budget.limited() || o.sparse.oracle || o.sparse.mode != sparse::EngineMode::automatic)
      throw common::UsageError(path + " is a dense model: a memory budget, a decode mode and the oracle predictor "
                                      "need a converted sparse model",
                               "run powerinfer2-cli convert -m " + path + " -o MODEL.pi2.gguf");
    return;
  }
  sparse::SparseOptions so = o.sparse;
  // The GPU's memory after the attention matrices goes to the hottest neuron clusters.
  if (gpu) so.gpu_memory_bytes = gpu_memory_budget - gpu->device_bytes();
  sparse = std::make_unique<sparse::SparseFfn>(model, pool, so, program_bytes, forward.state_bytes(),
                                                 forward.max_batch());
  forward.set_ffn_backend(sparse.get());
}

}  // namespace powerinfer2::engine
