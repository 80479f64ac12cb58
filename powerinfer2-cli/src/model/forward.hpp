// The dense forward pass of a llama-family model: one token (decode, matrix-vector
// products) or a batch of prompt tokens (prefill, matrix-matrix products), with a KV cache.
// All run state, the KV cache included, is sized once at construction: nothing is allocated
// per token.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "common/aligned_buffer.hpp"
#include "common/thread_pool.hpp"
#include "model/model.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::model {

/// A layer's FFN computed elsewhere than from the model's dense matrices (the sparse engine).
class FfnBackend {
 public:
  virtual ~FfnBackend() = default;
  /// out[n][dim] = FFN of layer `layer` applied to xb[n][dim] (the ffn_norm output).
  virtual void ffn(std::size_t layer, const float* xb, std::size_t n, float* out) = 0;
};

/// Products of a prompt computed on another device (model/gpu_offload.hpp: the GPU).
class ProductOffload {
 public:
  virtual ~ProductOffload() = default;
  /// Every product of `ps` (one input x[n][cols]); false, computing nothing, when one of the
  /// matrices is not on the device.
  virtual bool products(std::span<const ops::Product> ps, const float* x, std::size_t n) = 0;
  /// Layer `layer`'s dense FFN (gate, up, activation, down) of xb[n][dim] into out[n][dim];
  /// false when its matrices are not on the device.
  virtual bool ffn(std::size_t layer, const float* xb, std::size_t n, float* out) = 0;

  /// What a whole prompt batch on the device needs from the forward pass.
  struct Batch {
    float* k_cache = nullptr;  // host [n_layer][n_ctx][kv_dim]: rows [0, pos0) are read,
    float* v_cache = nullptr;  //   rows [pos0, pos0 + n) written
    std::size_t n_ctx = 0;
    const float* rope_cos = nullptr;  // [n][n_rot / 2] for the batch's positions
    const float* rope_sin = nullptr;
    FfnBackend* ffn_backend = nullptr;  // set: the FFN runs there (host), else on the device
    float* host_xb = nullptr;           // [n][dim] host scratch for the FFN backend
    float* host_out = nullptr;          // [n][dim]
  };
  /// Every layer of the batch x[n][dim] (embedded tokens at positions pos0..) on the device,
  /// x replaced by the last layer's output; false, doing nothing, when the device does not hold
  /// every layer.
  virtual bool layers(float* x, std::size_t n, std::size_t pos0, const Batch& b) = 0;
};

/// Sees each layer's FFN input xb[n][dim] and the gate / up pre-activations [n][ffn] of the
/// dense FFN (profiling and predictor training). Called on the calling thread.
using FfnObserver =
    std::function<void(std::size_t layer, std::size_t n, const float* xb, const float* gate, const float* up)>;

class Forward {
 public:
  /// State for positions [0, n_ctx) (0: the model's context length) and prefill batches of
  /// up to max_batch tokens (longer prompts go in several batches).
  Forward(const Model& model, common::ThreadPool& pool, std::size_t n_ctx = 0, std::size_t max_batch = 512);
  Forward(const Forward&) = delete;
  Forward& operator=(const Forward&) = delete;

  std::size_t n_ctx() const { return n_ctx_; }
  std::size_t vocab() const { return cfg_.vocab; }

  /// Runs `token` at position `pos` (positions before it must be in the cache); returns the
  /// logits [vocab], valid until the next call.
  std::span<const float> decode(model::TokenId token, std::size_t pos);

  /// Runs tokens at positions pos0, pos0 + 1, ... and returns the logits of the last one.
  /// With `all_logits` ([n][vocab]), every token's logits are written there too.
  std::span<const float> prefill(std::span<const model::TokenId> tokens, std::size_t pos0,
                                 std::span<float> all_logits = {});

  /// The embedding row of `token`, dequantized ([dim]).
  void embed(model::TokenId token, std::span<float> out) const;

  /// Routes every layer's FFN to `backend` (nullptr: the dense matrices); not owned.
  void set_ffn_backend(FfnBackend* backend) { ffn_backend_ = backend; }
  /// Routes the products of batches of at least `min_tokens` tokens (prompts) to `offload`
  /// where it holds the matrices (nullptr: none); not owned.
  void set_product_offload(ProductOffload* offload, std::size_t min_tokens = 2) {
    offload_ = offload;
    offload_min_tokens_ = min_tokens;
  }
  /// Observes the dense FFN (not called when a backend is set).
  void set_ffn_observer(FfnObserver observer) { observer_ = std::move(observer); }

  /// Bytes of run state: KV cache, activations, workspace (the memory budget's fixed part).
  std::size_t state_bytes() const;
  std::size_t max_batch() const { return max_batch_; }

 private:
  void prefill_batch(std::span<const model::TokenId> tokens, std::size_t pos0, std::span<float> all_logits);
  float* k_cache(std::size_t layer, std::size_t pos) { return k_cache_.data() + (layer * n_ctx_ + pos) * cfg_.kv_dim(); }
  float* v_cache(std::size_t layer, std::size_t pos) { return v_cache_.data() + (layer * n_ctx_ + pos) * cfg_.kv_dim(); }
  // Attention of n tokens at pos0.. (q [n][q_dim], cache filled) into out [n][q_dim].
  void attention(std::size_t layer, const float* q, std::size_t n, std::size_t pos0, float* out);
  static constexpr std::size_t kQueryBlock = 16;  // queries per attention task

  const model::ModelConfig& cfg_;
  const model::ModelWeights& w_;
  common::ThreadPool& pool_;
  std::size_t n_ctx_ = 0, max_batch_ = 0;
  ops::Workspace ws_;
  common::AlignedBuffer<float> k_cache_, v_cache_;  // [n_layer][n_ctx][kv_dim]
  common::AlignedBuffer<float> x_, xb_, q_, att_, hb_, hb2_;  // [max_batch][dim|q_dim|ffn_dim]
  common::AlignedBuffer<float> logits_;                       // [vocab]
  common::AlignedBuffer<float> scores_;  // [threads][scores_stride_]: attend_group's scratch
  std::size_t scores_stride_ = 0;
  common::AlignedBuffer<float> rope_cos_, rope_sin_;          // [max_batch][n_rot / 2]
  FfnBackend* ffn_backend_ = nullptr;
  ProductOffload* offload_ = nullptr;
  std::size_t offload_min_tokens_ = 2;
  FfnObserver observer_;
};

}  // namespace powerinfer2::model
