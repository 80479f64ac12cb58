// tools/make-model's library: llama GGUF models of a chosen shape with random weights,
// deterministic by seed, for tests and benchmarks (no real checkpoint needed).
//
// Weight scheme (the sparse issue builds on it; README "tools/make-model"):
//   - every tensor's rows are independent random streams: row r of tensor NAME draws from
//     splitmix64 seeded with mix(seed ^ mix(fnv1a(NAME) + r * golden)), one 64-bit draw per
//     element, so a file does not depend on the thread count or on other tensors;
//   - an element is the sum of the draw's four 16-bit fields, centred (an Irwin-Hall, close
//     to a normal, bounded at +-3.46 sigma) times std / its sigma, with std = 1 / sqrt(row
//     length) (fan-in scaling: every product keeps unit variance through the layers);
//     integer arithmetic and one float multiply make the values identical on every machine;
//   - norms (1-D) are 1.0; matrices are rounded to the file's type by the project's (ggml's
//     reference) converters.
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

/// tiny (tests), 1b (TinyLlama-1.1B), 7b (Mistral-7B-v0.1).
std::span<const ModelShape> presets();
/// The preset of that name (case-insensitive), or nullptr.
const ModelShape* find_preset(std::string_view name);
/// "tiny, 1b, 7b".
std::string preset_names();

struct MakeModelOptions {
  ModelShape shape;
  io::GgmlType type = io::GgmlType::F32;  // F32, F16, Q8_0 or Q4_0
  model::FfnActivation activation = model::FfnActivation::swiglu;
  std::uint64_t seed = 1;
  std::string vocab_path;  // a GGUF whose tokenizer.* keys are copied; empty: byte-level
};

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
