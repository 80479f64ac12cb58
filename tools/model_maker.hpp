// tools/make-model's library: llama GGUF models of a chosen shape with random weights,
// deterministic by seed, for tests and benchmarks (no real checkpoint needed).
//
// Weight scheme (the sparse models build on it; docs/powerinfer2.md, "make-model"):
//   - every tensor's rows are independent random streams: row r of tensor NAME draws from
//     splitmix64 seeded with mix(seed ^ mix(fnv1a(NAME) + r * golden)), one 64-bit draw per
//     element, so a file does not depend on the thread count or on other tensors;
//   - an element is the sum of the draw's four 16-bit fields, centred (an Irwin-Hall, close
//     to a normal, bounded at +-3.46 sigma) times std / its sigma, with std = 1 / sqrt(row
//     length) (fan-in scaling: every product keeps unit variance through the layers);
//     integer arithmetic and one float multiply make the values identical on every machine;
//   - norms (1-D) are 1.0; matrices are rounded to the file's type by the project's (ggml's
//     reference) converters.
//
// Sparse ReGLU/dReLU models (sparsity > 0; docs/powerinfer2.md, "Sparse ReGLU/dReLU models"):
//   - channel 0 of the residual stream is a constant "bias channel": every token_embd row has
//     element 0 = 1 and the other elements std 1 (not 1/sqrt(dim)), row 0 of attn_output and
//     ffn_down is zero (no layer writes channel 0), so x[0] = 1 at every layer;
//   - the rest of the residual stream lives in a subspace of rank k = max(8, dim / 32), as real
//     LLMs' hidden states are anisotropic / low-rank (what lets a low-rank activation predictor
//     work): a basis C (k x dim, stream "powerinfer2.subspace" row c, element std 1/sqrt(k),
//     column 0 zero); token_embd row t = e0 + z_t C with z_t the first k unit draws of row t's
//     stream; attn_output and ffn_down = C^T D with D (k x row length, stream "NAME:subspace")
//     of the plain element std, so every element keeps its plain variance. x, and the FFN
//     input rmsnorm(x) * ffn_norm, lie in span(e0, C) up to rounding (quantization included);
//     gate/up rows stay full-rank and independent of C, so gate pre-activations keep their
//     distribution. These sums of products of two integer draws are exact in double (< 2^41),
//     then scaled once: the bytes do not depend on summation order, FMA or threads;
//   - attn_output and ffn_down are scaled by 1/sqrt(2 n_layer) (GPT-2's residual scaling), so
//     the embedding dominates the residual and rms(x) stays near 1 through the layers;
//   - ffn_norm's element 0 is sqrt(dim): the normed FFN input has xb[0] ~ sqrt(dim), a
//     massive-activation channel like real LLMs', and element 0 of gate row i is
//     -tau_i / sqrt(dim): a per-neuron bias -tau_i against a pre-activation of std ~1;
//   - tau_i = PhiInv(1 - p_i), with firing probabilities p_i = min(0.95, c exp(-u_i / lambda)),
//     u_i uniform by seed, lambda so that the hottest hot_fraction of neurons carry 80% of the
//     firings, c so that their mean is 1 - sparsity (dReLU: gate and up each fire with
//     sqrt(p_i), both shaped).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.hpp"
#include "io/gguf_types.hpp"
#include "model/config.hpp"

namespace powerinfer2::tools {

/// A model shape: the llama hyper-parameters make-model writes.
struct ModelShape {
  std::string name;  // the preset's name
  std::uint32_t dim = 0, ffn_dim = 0, n_layer = 0, n_head = 0, n_kv_head = 0;
  std::uint32_t vocab = 0;  // replaced by the vocabulary's size with --vocab
  std::uint32_t n_ctx = 0;  // llama.context_length (engines may run with a shorter context)
  float rope_base = 10000.0f;
  float rms_eps = 1e-5f;
};

/// The preset of that name (case-insensitive), or nullptr: tiny (tests), 1b (TinyLlama-1.1B),
/// 7b (Mistral-7B-v0.1).
const ModelShape* find_preset(std::string_view name);
/// "tiny, 1b, 7b".
std::string preset_names();

struct MakeModelOptions {
  ModelShape shape;
  io::GgmlType type = io::GgmlType::F32;  // F32, F16, Q8_0 or Q4_0
  model::FfnActivation activation = model::FfnActivation::swiglu;
  std::uint64_t seed = 1;
  std::string vocab_path;  // a GGUF whose tokenizer.* keys are copied; empty: byte-level
  /// Target fraction of FFN neurons that are zero per token (ReGLU/dReLU only; 0: the plain
  /// scheme). Must be in [0, 0.99).
  double sparsity = 0.0;
  /// The fraction of neurons that carry 80% of the firings, in (0, 0.8].
  double hot_fraction = 0.2;
};

/// The per-neuron firing probabilities p_i of layer `layer` of a sparse model (the scheme
/// above), ffn_dim values, mean 1 - sparsity.
std::vector<double> firing_probabilities(std::uint64_t seed, std::uint32_t layer, std::uint32_t ffn_dim,
                                         double sparsity, double hot_fraction);

/// The rank k of a sparse model's residual subspace: max(8, dim / 32) (at most dim - 1).
std::uint32_t subspace_rank(std::uint32_t dim);

/// What was written.
struct MakeModelResult {
  model::ModelConfig config;
  std::size_t n_tensors = 0;
  std::uint64_t n_params = 0;
  std::uint64_t tensor_bytes = 0;
  std::vector<std::string> kept_f16;  // matrices whose rows are not whole 32-blocks
};

/// The type a tensor is stored in: norms (1-D) F32; matrices the requested type, or F16
/// for Q8_0/Q4_0 when the row length is not a multiple of 32 (as llama.cpp falls back).
io::GgmlType tensor_type(io::GgmlType requested, std::size_t n_dims, std::uint64_t row_length);

/// The standard deviation of a matrix with rows of `row_length` elements: 1 / sqrt(row_length).
float weight_std(std::uint64_t row_length);

/// Row `row` of tensor `tensor` as floats (the scheme above), `out.size()` elements.
void generate_row(std::uint64_t seed, std::string_view tensor, std::uint64_t row, float std_dev,
                  std::span<float> out);

/// Writes the model to `out_path` (temporary file + rename; "-" is stdout), generating each
/// tensor while it is written, rows in parallel on `pool`: memory stays at about the largest
/// tensor. UsageError for a bad shape or type, InputError for a bad --vocab file, IoError
/// when a file cannot be read or written.
MakeModelResult make_model(const MakeModelOptions& options, const std::string& out_path, common::ThreadPool& pool);

}  // namespace powerinfer2::tools
