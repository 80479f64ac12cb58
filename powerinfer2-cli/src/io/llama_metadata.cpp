#include "io/llama_metadata.hpp"

#include <cstdint>
#include <span>

#include "io/gguf_writer.hpp"

namespace powerinfer2::io {

namespace {

enum class Field : std::uint8_t {
  file_type,
  block_count,
  context_length,
  embedding_length,
  feed_forward_length,
  head_count,
  head_count_kv,
  rms_epsilon,
  rope_dimension_count,
  rope_freq_base,
  vocab_size,
};

using enum Field;
constexpr Field kConvertHfOrder[] = {block_count, context_length, embedding_length,    feed_forward_length,
                                     head_count,  head_count_kv,  rope_freq_base,      rms_epsilon,
                                     file_type,   vocab_size,     rope_dimension_count};
constexpr Field kLlama2cOrder[] = {file_type,   vocab_size,           context_length, embedding_length,
                                   block_count, feed_forward_length,  head_count,     head_count_kv,
                                   rms_epsilon, rope_dimension_count, rope_freq_base};

void set_field(GgufWriter& w, const LlamaMetadata& m, Field f) {
  auto key = [](std::string_view suffix) { return arch_key("llama", suffix); };
  switch (f) {
    case file_type: return w.set(std::string(kFileTypeKey), m.file_type);
    case block_count: return w.set(key(llama_key::kBlockCount), m.n_layer);
    case context_length: return w.set(key(llama_key::kContextLength), m.n_ctx);
    case embedding_length: return w.set(key(llama_key::kEmbeddingLength), m.dim);
    case feed_forward_length: return w.set(key(llama_key::kFeedForwardLength), m.ffn_dim);
    case head_count: return w.set(key(llama_key::kHeadCount), m.n_head);
    case head_count_kv: return w.set(key(llama_key::kHeadCountKv), m.n_kv_head);
    case rms_epsilon: return w.set(key(llama_key::kRmsEpsilon), m.rms_eps);
    case rope_dimension_count: return w.set(key(llama_key::kRopeDimensionCount), m.n_rot);
    case rope_freq_base: return w.set(key(llama_key::kRopeFreqBase), m.rope_base);
    case vocab_size: return w.set(key(llama_key::kVocabSize), m.vocab);
  }
}

}  // namespace

std::string arch_key(std::string_view arch, std::string_view suffix) {
  std::string key(arch);
  key += '.';
  key += suffix;
  return key;
}

void set_llama_metadata(GgufWriter& w, const LlamaMetadata& m, LlamaKeyOrder order) {
  w.set(std::string(kArchitectureKey), "llama");
  w.set(std::string(kNameKey), m.name);
  const std::span<const Field> fields = order == LlamaKeyOrder::convert_hf
                                            ? std::span<const Field>(kConvertHfOrder)
                                            : std::span<const Field>(kLlama2cOrder);
  for (const Field f : fields) set_field(w, m, f);
}

}  // namespace powerinfer2::io
