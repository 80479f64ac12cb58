// The dense side of the engine on the GPU, the role the NPU plays in PowerInfer-2: the model's
// matrices resident in device memory (in their GGUF bytes) and a prompt run there with cuBLAS
// products and the project's kernels (ops/cuda). When the budget holds every layer (and the KV
// cache), a prompt batch runs all layers on the device — norms, RoPE, attention, residuals;
// a sparse model's FFN goes back to the host engine per layer — and only the embeddings go
// up and the residual stream, K and V come down. Otherwise the layers that fit run their
// products there and the rest on the CPU. Decode (one token) stays on the CPU, except a sparse
// model's hot neurons (sparse/sparse_ffn.hpp, NeuronFfn).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "model/forward.hpp"
#include "model/model.hpp"
#include "ops/cuda/cuda_ops.hpp"

namespace powerinfer2::model {

class GpuProducts final : public ProductOffload {
 public:
  /// Uploads what fits in `memory_bytes`: every layer's matrices (attention; FFN too for a
  /// dense model), the output head, the norms and a KV cache of n_ctx positions when all of it
  /// fits; else layer by layer while they fit (products only). Takes the bytes from the file
  /// (the GGUF layout, whatever the CPU repacked). UsageError when not even the scratch fits.
  GpuProducts(const Model& model, std::size_t max_batch, std::size_t n_ctx, std::uint64_t memory_bytes);

  bool products(std::span<const ops::Product> ps, const float* x, std::size_t n) override;
  bool ffn(std::size_t layer, const float* xb, std::size_t n, float* out) override;
  bool layers(float* x, std::size_t n, std::size_t pos0, const Batch& b) override;

  std::uint64_t device_bytes() const { return device_bytes_; }
  std::size_t resident_layers() const { return resident_layers_; }
  /// Whether prompts run every layer on the device (not only products).
  bool whole_layers() const { return whole_; }

 private:
  float* buf(ops::cuda::DeviceBytes& b) { return static_cast<float*>(b.get()); }

  const model::ModelConfig& cfg_;
  const model::ModelWeights& w_;
  bool with_ffn_ = false, whole_ = false;
  std::size_t max_batch_ = 0, n_ctx_ = 0;
  std::unique_ptr<ops::cuda::GemmRunner> runner_;
  std::unordered_map<const ops::WeightMatrix*, ops::cuda::DeviceMatrix> mats_;
  std::uint64_t device_bytes_ = 0;
  std::size_t resident_layers_ = 0;  // layers [0, resident_layers_) are on the device
  // Whole layers: norms [layer][dim], KV cache [layer][n_ctx][kv_dim], run buffers.
  std::vector<ops::cuda::DeviceBytes> attn_norm_, ffn_norm_;
  ops::cuda::DeviceBytes k_cache_, v_cache_, x_, xb_, q_, att_, g_, u_, cos_, sin_;
  std::vector<const ops::cuda::DeviceMatrix*> batch_w_;
  std::vector<float*> batch_y_;
};

}  // namespace powerinfer2::model
