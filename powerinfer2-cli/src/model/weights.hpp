// Views of a model's tensors inside an open GGUF file. The tensors are listed once, in
// tensor_table(): loading and shape validation iterate that list.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "io/gguf_reader.hpp"
#include "model/config.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::model {

struct LayerWeights {
  std::span<const float> attn_norm;  // [dim], F32
  ops::WeightMatrix wq;              // [q_dim rows, dim cols]
  ops::WeightMatrix wk;              // [kv_dim, dim]
  ops::WeightMatrix wv;              // [kv_dim, dim]
  ops::WeightMatrix wo;              // [dim, q_dim]
  std::span<const float> ffn_norm;   // [dim], F32
  ops::WeightMatrix gate;            // [ffn_dim, dim]
  ops::WeightMatrix up;              // [ffn_dim, dim]
  ops::WeightMatrix down;            // [dim, ffn_dim]
};

struct ModelWeights {
  ops::WeightMatrix token_embd;        // [vocab rows, dim cols]
  std::vector<LayerWeights> layers;    // [n_layer]
  std::span<const float> output_norm;  // [dim]
  ops::WeightMatrix output;            // [vocab, dim]; token_embd when absent (tied)
  bool tied_output = false;
};

/// One entry of the tensor list: the name, the expected shape (ne[0] first) with the
/// metadata key each dimension comes from, and where the view goes.
struct TensorSlot {
  std::string name;
  std::size_t n_dims = 2;
  std::size_t ne[2] = {1, 1};
  std::string ne_key[2];
  ops::WeightMatrix* matrix = nullptr;   // set for 2-D tensors
  std::span<const float>* vector = nullptr;  // set for 1-D (norm) tensors, F32 only
  bool optional = false;               // output.weight: falls back to token_embd.weight
};

/// Every tensor of the model, bound to the fields of `w` (w.layers is resized here). Without
/// `with_ffn` the FFN matrices are left out (a converted sparse model stores them as bundles).
std::vector<TensorSlot> tensor_table(const ModelConfig& c, ModelWeights& w, bool with_ffn = true);

/// Views of all tensors, checked: a missing tensor, a shape that disagrees with the config
/// ("model.gguf: tensor blk.3.ffn_up.weight has shape 4096x11008, expected 4096x14336 from
/// llama.feed_forward_length") or an unsupported type is an InputError.
ModelWeights load_weights(const io::GgufFile& file, const ModelConfig& c, bool with_ffn = true);

}  // namespace powerinfer2::model
