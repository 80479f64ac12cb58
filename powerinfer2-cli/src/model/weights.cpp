#include "model/weights.hpp"

#include "common/errors.hpp"
#include "io/llama_metadata.hpp"

namespace powerinfer2::model {

std::vector<TensorSlot> tensor_table(const ModelConfig& c, ModelWeights& w, bool with_ffn) {
  namespace K = io::llama_key;
  const std::string k_dim = c.key(K::kEmbeddingLength), k_ffn = c.key(K::kFeedForwardLength);
  const std::string k_q = c.key(K::kHeadCount), k_kv = c.key(K::kHeadCountKv);
  const std::string k_vocab = c.key(K::kVocabSize);
  std::vector<TensorSlot> t;
  auto mat = [&](std::string name, std::size_t ne0, const std::string& key0, std::size_t ne1,
                 const std::string& key1, ops::WeightMatrix* m, bool optional = false) {
    TensorSlot s;
    s.name = std::move(name);
    s.ne[0] = ne0;
    s.ne[1] = ne1;
    s.ne_key[0] = key0;
    s.ne_key[1] = key1;
    s.matrix = m;
    s.optional = optional;
    t.push_back(std::move(s));
  };
  auto vec = [&](std::string name, std::span<const float>* v) {
    TensorSlot s;
    s.name = std::move(name);
    s.n_dims = 1;
    s.ne[0] = c.dim;
    s.ne_key[0] = k_dim;
    s.vector = v;
    t.push_back(std::move(s));
  };
  w.layers.assign(c.n_layer, LayerWeights{});
  mat("token_embd.weight", c.dim, k_dim, c.vocab, k_vocab, &w.token_embd);
  for (std::uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights& L = w.layers[l];
    vec(p + "attn_norm.weight", &L.attn_norm);
    mat(p + "attn_q.weight", c.dim, k_dim, c.q_dim(), k_q, &L.wq);
    mat(p + "attn_k.weight", c.dim, k_dim, c.kv_dim(), k_kv, &L.wk);
    mat(p + "attn_v.weight", c.dim, k_dim, c.kv_dim(), k_kv, &L.wv);
    mat(p + "attn_output.weight", c.q_dim(), k_q, c.dim, k_dim, &L.wo);
    vec(p + "ffn_norm.weight", &L.ffn_norm);
    if (!with_ffn) continue;
    mat(p + "ffn_gate.weight", c.dim, k_dim, c.ffn_dim, k_ffn, &L.gate);
    mat(p + "ffn_up.weight", c.dim, k_dim, c.ffn_dim, k_ffn, &L.up);
    mat(p + "ffn_down.weight", c.ffn_dim, k_ffn, c.dim, k_dim, &L.down);
  }
  vec("output_norm.weight", &w.output_norm);
  mat("output.weight", c.dim, k_dim, c.vocab, k_vocab, &w.output, /*optional=*/true);
  return t;
}

ModelWeights load_weights(const io::GgufFile& file, const ModelConfig& c, bool with_ffn) {
  ModelWeights w;
  const common::Where where(file.path());
  for (const TensorSlot& s : tensor_table(c, w, with_ffn)) {
    const std::optional<io::GgufTensorView> v = file.find_tensor(s.name);
    if (!v) {
      if (s.optional) continue;
      throw common::InputError::message(where, "no tensor named '" + s.name + "'",
                                        "the model lacks a tensor that architecture " + c.arch + " needs");
    }
    std::vector<std::uint64_t> expected(s.ne, s.ne + s.n_dims);
    const bool shape_ok = v->shape.size() == s.n_dims && v->shape[0] == s.ne[0] &&
                          (s.n_dims == 1 || v->shape[1] == s.ne[1]);
    if (!shape_ok) {
      // Name the key of the first dimension that disagrees.
      std::string key = s.ne_key[0];
      if (v->shape.size() >= 1 && v->shape[0] == s.ne[0] && s.n_dims == 2) key = s.ne_key[1];
      throw common::InputError::message(where, "tensor " + s.name + " has shape " + io::format_shape(v->shape) +
                                                   ", expected " + io::format_shape(expected) + " from " + key);
    }
    if (s.vector) {
      if (v->type != io::GgmlType::F32)
        throw common::InputError::message(where, "tensor " + s.name + " has type " +
                                                     std::string(io::ggml_type_name(v->type)) + ", expected F32");
      *s.vector = {reinterpret_cast<const float*>(v->data.data()), static_cast<std::size_t>(s.ne[0])};
    } else {
      if (!ops::is_supported_weight_type(v->type))
        throw common::InputError::message(where, "tensor " + s.name + " has type " +
                                                     std::string(io::ggml_type_name(v->type)) +
                                                     ", expected one of F32, F16, Q8_0, Q4_0");
      *s.matrix = ops::WeightMatrix{v->type, v->data.data(), s.ne[1], s.ne[0]};
    }
  }
  if (w.output.data == nullptr) {
    w.output = w.token_embd;
    w.tied_output = true;
  }
  return w;
}

}  // namespace powerinfer2::model
