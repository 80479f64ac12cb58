// The metadata keys of a llama-family GGUF model, as llama.cpp names them: written by the
// llama2.c import and make-model (set_llama_metadata), read by model/config.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace powerinfer2::io {

class GgufWriter;

inline constexpr std::string_view kArchitectureKey = "general.architecture";
inline constexpr std::string_view kNameKey = "general.name";
inline constexpr std::string_view kFileTypeKey = "general.file_type";  // llama.cpp's LLAMA_FTYPE_*

/// The hyper-parameter keys, after "<arch>." (arch_key joins them).
namespace llama_key {
inline constexpr std::string_view kBlockCount = "block_count";
inline constexpr std::string_view kContextLength = "context_length";
inline constexpr std::string_view kEmbeddingLength = "embedding_length";
inline constexpr std::string_view kFeedForwardLength = "feed_forward_length";
inline constexpr std::string_view kHeadCount = "attention.head_count";
inline constexpr std::string_view kHeadCountKv = "attention.head_count_kv";
inline constexpr std::string_view kKeyLength = "attention.key_length";
inline constexpr std::string_view kRmsEpsilon = "attention.layer_norm_rms_epsilon";
inline constexpr std::string_view kRopeDimensionCount = "rope.dimension_count";
inline constexpr std::string_view kRopeFreqBase = "rope.freq_base";
inline constexpr std::string_view kVocabSize = "vocab_size";
}  // namespace llama_key

/// "<arch>.<suffix>": arch_key("llama", llama_key::kBlockCount) is "llama.block_count".
std::string arch_key(std::string_view arch, std::string_view suffix);

/// What the tools write about a llama model (architecture "llama").
struct LlamaMetadata {
  std::string name;             // general.name
  std::uint32_t file_type = 0;  // general.file_type
  std::uint32_t n_layer = 0;    // llama.block_count
  std::uint32_t n_ctx = 0;      // llama.context_length
  std::uint32_t dim = 0;        // llama.embedding_length
  std::uint32_t ffn_dim = 0;    // llama.feed_forward_length
  std::uint32_t n_head = 0;     // llama.attention.head_count
  std::uint32_t n_kv_head = 0;  // llama.attention.head_count_kv
  std::uint32_t n_rot = 0;      // llama.rope.dimension_count
  std::uint32_t vocab = 0;      // llama.vocab_size
  float rope_base = 10000.0f;   // llama.rope.freq_base
  float rms_eps = 1e-5f;        // llama.attention.layer_norm_rms_epsilon
};

/// The order the keys go into the file: GGUF keeps the order they were set in, so it shows
/// in the file's bytes.
enum class LlamaKeyOrder {
  convert_hf,  // llama.cpp's convert_hf_to_gguf.py's order (make-model)
  llama2c,     // the llama2.c import's: file type and vocabulary size first
};

/// Sets general.architecture ("llama") and general.name, then general.file_type and the
/// llama.* keys of `m` in `order`.
void set_llama_metadata(GgufWriter& w, const LlamaMetadata& m, LlamaKeyOrder order);

}  // namespace powerinfer2::io
