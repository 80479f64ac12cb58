#include "model/config.hpp"

#include "common/errors.hpp"
#include "io/llama_metadata.hpp"

namespace powerinfer2::model {

std::string_view activation_name(FfnActivation a) {
  switch (a) {
    case FfnActivation::swiglu: return "swiglu";
    case FfnActivation::reglu: return "reglu";
    case FfnActivation::drelu: return "drelu";
  }
  return "?";
}

namespace {

namespace K = io::llama_key;

[[noreturn]] void bad(const io::GgufFile& f, const std::string& key, const std::string& text) {
  throw common::InputError::message(common::Where(f.path()), "metadata key " + key + ": " + text);
}

}  // namespace

ModelConfig load_config(const io::GgufFile& f) {
  ModelConfig c;
  c.arch = f.get_string(io::kArchitectureKey);
  if (c.arch != "llama" && c.arch != "bamboo")
    bad(f, std::string(io::kArchitectureKey),
        "architecture \"" + c.arch + "\" is not supported; supported: \"llama\", \"bamboo\"");
  c.n_layer = f.get_u32(c.key(K::kBlockCount));
  c.dim = f.get_u32(c.key(K::kEmbeddingLength));
  c.ffn_dim = f.get_u32(c.key(K::kFeedForwardLength));
  c.n_head = f.get_u32(c.key(K::kHeadCount));
  c.n_kv_head = f.get_u32_or(c.key(K::kHeadCountKv), c.n_head);
  if (c.n_layer == 0) bad(f, c.key(K::kBlockCount), "expected a positive count, got 0");
  if (c.dim == 0) bad(f, c.key(K::kEmbeddingLength), "expected a positive size, got 0");
  if (c.ffn_dim == 0) bad(f, c.key(K::kFeedForwardLength), "expected a positive size, got 0");
  if (c.n_head == 0) bad(f, c.key(K::kHeadCount), "expected a positive count, got 0");
  if (c.n_kv_head == 0 || c.n_head % c.n_kv_head != 0)
    bad(f, c.key(K::kHeadCountKv),
        "expected a divisor of head_count " + std::to_string(c.n_head) + ", got " + std::to_string(c.n_kv_head));
  if (!f.has(c.key(K::kKeyLength)) && c.dim % c.n_head != 0)
    bad(f, c.key(K::kHeadCount),
        "embedding_length " + std::to_string(c.dim) + " is not a multiple of head_count " + std::to_string(c.n_head));
  c.head_dim = f.get_u32_or(c.key(K::kKeyLength), c.dim / c.n_head);
  if (c.head_dim == 0 || c.head_dim % 2 != 0)
    bad(f, c.key(K::kKeyLength), "expected a positive even head size, got " + std::to_string(c.head_dim));
  c.n_rot = f.get_u32_or(c.key(K::kRopeDimensionCount), c.head_dim);
  if (c.n_rot % 2 != 0 || c.n_rot > c.head_dim)
    bad(f, c.key(K::kRopeDimensionCount),
        "expected an even count <= head size " + std::to_string(c.head_dim) + ", got " + std::to_string(c.n_rot));
  c.rope_base = f.get_f32_or(c.key(K::kRopeFreqBase), 10000.0f);
  c.rms_eps = f.get_f32_or(c.key(K::kRmsEpsilon), 1e-5f);
  if (!(c.rms_eps > 0.0f)) bad(f, c.key(K::kRmsEpsilon), "expected a positive epsilon");
  c.n_ctx = f.get_u32(c.key(K::kContextLength));
  if (c.n_ctx == 0) bad(f, c.key(K::kContextLength), "expected a positive length, got 0");
  if (f.has(c.key(K::kVocabSize)))
    c.vocab = f.get_u32(c.key(K::kVocabSize));
  else if (f.has("tokenizer.ggml.tokens"))
    c.vocab = static_cast<std::uint32_t>(f.get_string_array("tokenizer.ggml.tokens").size());
  else if (auto t = f.find_tensor("token_embd.weight"); t && t->shape.size() == 2)
    c.vocab = static_cast<std::uint32_t>(t->shape[1]);
  if (c.vocab == 0) bad(f, c.key(K::kVocabSize), "no vocabulary size (nor tokenizer.ggml.tokens)");

  c.activation = c.arch == "bamboo" ? FfnActivation::drelu : FfnActivation::swiglu;
  if (f.has(kFfnActivationKey)) {
    const std::string& a = f.get_string(kFfnActivationKey);
    if (a == "swiglu") c.activation = FfnActivation::swiglu;
    else if (a == "reglu") c.activation = FfnActivation::reglu;
    else if (a == "drelu") c.activation = FfnActivation::drelu;
    else bad(f, std::string(kFfnActivationKey), "expected \"swiglu\", \"reglu\" or \"drelu\", got \"" + a + "\"");
  }
  return c;
}

}  // namespace powerinfer2::model
