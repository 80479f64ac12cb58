// A llama-family model's hyper-parameters, read from GGUF metadata ("<arch>.*" keys as
// llama.cpp writes them). Architectures: "llama" (also Mistral: GQA, rope base and RMSNorm
// eps from metadata) and "bamboo" (PowerInfer's TurboSparse, dReLU FFN).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "io/gguf_reader.hpp"
#include "io/llama_metadata.hpp"
#include "ops/activation.hpp"

namespace powerinfer2::model {

/// The FFN's gating (ops' enum: the kernels take it as it is).
using FfnActivation = ops::Activation;

std::string_view activation_name(FfnActivation a);

/// Metadata key naming the activation ("swiglu", "reglu", "drelu"), written by this
/// project's tools. Absent: dReLU for architecture "bamboo", SwiGLU otherwise.
inline constexpr std::string_view kFfnActivationKey = "powerinfer2.ffn_activation";

struct ModelConfig {
  std::string arch;              // general.architecture
  std::uint32_t n_layer = 0;     // <arch>.block_count
  std::uint32_t dim = 0;         // <arch>.embedding_length
  std::uint32_t ffn_dim = 0;     // <arch>.feed_forward_length
  std::uint32_t n_head = 0;      // <arch>.attention.head_count
  std::uint32_t n_kv_head = 0;   // <arch>.attention.head_count_kv (default n_head)
  std::uint32_t head_dim = 0;    // <arch>.attention.key_length (default dim / n_head)
  std::uint32_t n_rot = 0;       // <arch>.rope.dimension_count (default head_dim)
  float rope_base = 10000.0f;    // <arch>.rope.freq_base
  float rms_eps = 1e-5f;         // <arch>.attention.layer_norm_rms_epsilon
  std::uint32_t n_ctx = 0;       // <arch>.context_length
  std::uint32_t vocab = 0;       // <arch>.vocab_size, else tokenizer.ggml.tokens' length
  FfnActivation activation = FfnActivation::swiglu;

  std::size_t q_dim() const { return std::size_t{n_head} * head_dim; }
  std::size_t kv_dim() const { return std::size_t{n_kv_head} * head_dim; }
  /// Metadata key a quantity comes from, for error messages ("llama.feed_forward_length").
  std::string key(std::string_view suffix) const { return io::arch_key(arch, suffix); }
};

/// Reads and checks the config; InputError naming the file and key for a missing or
/// inconsistent value (e.g. head_count not a multiple of head_count_kv).
ModelConfig load_config(const io::GgufFile& file);

}  // namespace powerinfer2::model
