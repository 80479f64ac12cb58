#include "model_maker.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "common/errors.hpp"
#include "common/progress.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "io/spm_vocab.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"
#include "ops/fp16.hpp"
#include "ops/quantize_file.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::tools {

namespace {

using io::GgmlType;

// name, dim, ffn, layers, heads, kv heads, vocab, context, rope base, RMS eps.
const ModelShape kPresets[] = {
    // Small enough for tests to run in milliseconds; 2 query heads per KV head (GQA).
    {"tiny", 64, 192, 3, 4, 2, 512, 256, 10000.0f, 1e-5f},
    // TinyLlama-1.1B (TinyLlama/TinyLlama-1.1B-Chat-v1.0's config.json).
    {"1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 1e-5f},
    // Mistral-7B-v0.1 (mistralai/Mistral-7B-v0.1's config.json; its sliding window of 4096
    // is not written, as llama.cpp's converter does not for the llama architecture).
    {"7b", 4096, 14336, 32, 32, 8, 32000, 32768, 10000.0f, 1e-5f},
};

constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's finaliser.
std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// The sum of four uniform 16-bit integers, centred: mean 0, variance 4 (2^32 - 1) / 12.
constexpr std::int32_t kIrwinHallMean = 2 * 65535;
const double kIrwinHallSigma = std::sqrt(4.0 * (65536.0 * 65536.0 - 1.0) / 12.0);

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

void check_shape(const ModelShape& s) {
  auto positive = [](std::uint32_t v, const char* what) {
    if (v == 0) throw common::UsageError(std::string(what) + " must be positive");
  };
  positive(s.dim, "the embedding width");
  positive(s.ffn_dim, "the FFN width");
  positive(s.n_layer, "--layers");
  positive(s.n_head, "the head count");
  positive(s.n_kv_head, "the KV head count");
  positive(s.n_ctx, "--ctx");
  if (s.n_head % s.n_kv_head != 0 || s.dim % s.n_head != 0 || (s.dim / s.n_head) % 2 != 0)
    throw common::UsageError("inconsistent shape: dim " + std::to_string(s.dim) + ", " + std::to_string(s.n_head) +
                             " heads, " + std::to_string(s.n_kv_head) + " KV heads");
}

model::ModelConfig config_of(const ModelShape& s, model::FfnActivation activation) {
  model::ModelConfig c;
  c.arch = "llama";
  c.n_layer = s.n_layer;
  c.dim = s.dim;
  c.ffn_dim = s.ffn_dim;
  c.n_head = s.n_head;
  c.n_kv_head = s.n_kv_head;
  c.head_dim = s.dim / s.n_head;
  c.n_rot = c.head_dim;
  c.rope_base = s.rope_base;
  c.rms_eps = s.rms_eps;
  c.n_ctx = s.n_ctx;
  c.vocab = s.vocab;
  c.activation = activation;
  return c;
}

// The tokenizer.* keys of a GGUF file, checked to be a SentencePiece vocabulary that the
// project's tokenizer (and so llama.cpp) reads.
std::vector<io::GgufKeyValue> read_vocab(const std::string& path, std::uint32_t& vocab_size) {
  const io::GgufFile f(path);
  if (!f.has("tokenizer.ggml.tokens"))
    throw common::InputError(common::Where(path), "a vocabulary (metadata key tokenizer.ggml.tokens)",
                             "a GGUF file without one", "pass a model or a vocabulary file, e.g. llama.cpp's "
                                                        "models/ggml-vocab-llama-spm.gguf");
  const std::string tok_model = f.get_string_or("tokenizer.ggml.model", "");
  if (tok_model != "llama") {
    common::Where w(path);
    w.item = "metadata key tokenizer.ggml.model";
    throw common::InputError(w, "\"llama\" (a SentencePiece vocabulary)", "\"" + tok_model + "\"");
  }
  vocab_size = static_cast<std::uint32_t>(model::Tokenizer::from_gguf(f).size());
  std::vector<io::GgufKeyValue> keys;
  for (const io::GgufKeyValue& kv : f.metadata())
    if (kv.key.rfind("tokenizer.", 0) == 0) keys.push_back(kv);
  return keys;
}

// Fills one matrix: rows generated in parallel, each converted to `type`.
void fill_matrix(std::span<std::uint8_t> bytes, GgmlType type, const std::string& name, std::uint64_t seed,
                 std::size_t n_rows, std::size_t row_length, common::ThreadPool& pool) {
  const std::size_t row_bytes = static_cast<std::size_t>(*io::ggml_row_bytes(type, row_length));
  PWPI_CHECK(bytes.size() == n_rows * row_bytes);
  const float std_dev = weight_std(row_length);
  const std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 16) / row_length);
  pool.parallel_for(0, n_rows, grain, [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(row_length);
    for (std::size_t r = r0; r < r1; ++r) {
      generate_row(seed, name, r, std_dev, row);
      std::uint8_t* dst = bytes.data() + r * row_bytes;
      switch (type) {
        case GgmlType::F32: std::memcpy(dst, row.data(), row_bytes); break;
        case GgmlType::F16: ops::fp32_to_fp16_row(row.data(), reinterpret_cast<ops::fp16_t*>(dst), row_length); break;
        case GgmlType::Q8_0: ops::quantize_row_q8_0(row.data(), reinterpret_cast<ops::BlockQ8_0*>(dst), row_length); break;
        case GgmlType::Q4_0: ops::quantize_row_q4_0(row.data(), reinterpret_cast<ops::BlockQ4_0*>(dst), row_length); break;
        default: PWPI_CHECK_MSG(false, "unexpected tensor type");
      }
    }
  });
}

}  // namespace

std::span<const ModelShape> presets() { return kPresets; }

const ModelShape* find_preset(std::string_view name) {
  const std::string n = lower(name);
  for (const ModelShape& p : kPresets)
    if (p.name == n) return &p;
  return nullptr;
}

std::string preset_names() {
  std::string out;
  for (const ModelShape& p : kPresets) out += (out.empty() ? "" : ", ") + p.name;
  return out;
}

GgmlType tensor_type(GgmlType requested, std::size_t n_dims, std::uint64_t row_length) {
  if (n_dims < 2) return GgmlType::F32;
  const bool quantized = requested == GgmlType::Q8_0 || requested == GgmlType::Q4_0;
  if (quantized && row_length % ops::kQK != 0) return GgmlType::F16;
  return requested;
}

float weight_std(std::uint64_t row_length) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(row_length)));
}

void generate_row(std::uint64_t seed, std::string_view tensor, std::uint64_t row, float std_dev,
                  std::span<float> out) {
  std::uint64_t state = mix64(seed ^ mix64(fnv1a(tensor) + row * kGolden));
  const float scale = static_cast<float>(static_cast<double>(std_dev) / kIrwinHallSigma);
  for (float& x : out) {
    state += kGolden;
    const std::uint64_t r = mix64(state);
    const std::int32_t sum = static_cast<std::int32_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48));
    x = static_cast<float>(sum - kIrwinHallMean) * scale;  // exact integer, one rounding
  }
}

MakeModelResult make_model(const MakeModelOptions& o, const std::string& out_path, common::ThreadPool& pool) {
  if (o.type != GgmlType::F32 && o.type != GgmlType::F16 && o.type != GgmlType::Q8_0 && o.type != GgmlType::Q4_0)
    throw common::UsageError("cannot write weights of type " + std::string(io::ggml_type_name(o.type)),
                             "valid types: f32, f16, q8_0, q4_0");
  ModelShape shape = o.shape;
  check_shape(shape);
  std::vector<io::GgufKeyValue> vocab_keys;
  if (!o.vocab_path.empty()) {
    vocab_keys = read_vocab(o.vocab_path, shape.vocab);
  } else if (shape.vocab < 260) {
    throw common::UsageError("a byte-level vocabulary needs at least 260 tokens, got " + std::to_string(shape.vocab));
  }

  MakeModelResult result;
  result.config = config_of(shape, o.activation);
  const model::ModelConfig& c = result.config;

  // Metadata in the order llama.cpp's convert_hf_to_gguf.py writes it for llama.
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set("general.name", "make-model " + shape.name + " " + std::string(model::activation_name(o.activation)) +
                            " seed " + std::to_string(o.seed));
  w.set("llama.block_count", c.n_layer);
  w.set("llama.context_length", c.n_ctx);
  w.set("llama.embedding_length", c.dim);
  w.set("llama.feed_forward_length", c.ffn_dim);
  w.set("llama.attention.head_count", c.n_head);
  w.set("llama.attention.head_count_kv", c.n_kv_head);
  w.set("llama.rope.freq_base", c.rope_base);
  w.set("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
  w.set("general.file_type", ops::llama_file_type(o.type));  // LLAMA_FTYPE_ALL_F32 / MOSTLY_*
  w.set("llama.vocab_size", c.vocab);
  w.set("llama.rope.dimension_count", c.n_rot);
  w.set(std::string(model::kFfnActivationKey), std::string(model::activation_name(o.activation)));
  if (vocab_keys.empty()) {
    io::SpmVocab v = io::byte_level_spm_vocab(c.vocab);
    v.pre = "default";
    io::set_spm_vocab(w, std::move(v));
  } else {
    for (io::GgufKeyValue& kv : vocab_keys) w.set(std::move(kv.key), std::move(kv.value));
  }
  w.set("general.quantization_version", std::uint32_t{2});  // GGML_QNT_VERSION

  // The tensors, from the engine's one list of them (names, shapes, order).
  model::ModelWeights unused;
  const std::vector<model::TensorSlot> slots = model::tensor_table(c, unused);
  for (const model::TensorSlot& s : slots) {
    result.tensor_bytes += *io::ggml_tensor_bytes(tensor_type(o.type, s.n_dims, s.ne[0]),
                                                  std::vector<std::uint64_t>(s.ne, s.ne + s.n_dims));
  }
  common::ProgressBar progress("make-model", result.tensor_bytes);
  for (const model::TensorSlot& s : slots) {
    std::vector<std::uint64_t> ne(s.ne, s.ne + s.n_dims);  // ne[0] = row length
    const GgmlType type = tensor_type(o.type, s.n_dims, s.ne[0]);
    const std::size_t n_rows = s.n_dims == 1 ? 1 : s.ne[1];
    result.n_params += std::uint64_t{s.ne[0]} * n_rows;
    ++result.n_tensors;
    if (s.n_dims >= 2 && type != o.type) result.kept_f16.push_back(s.name);
    if (s.n_dims == 1) {
      w.add_tensor_generated(s.name, type, std::move(ne), [&progress](std::span<std::uint8_t> bytes) {
        const float one = 1.0f;
        for (std::size_t i = 0; i < bytes.size(); i += sizeof one) std::memcpy(bytes.data() + i, &one, sizeof one);
        progress.advance(bytes.size());
      });
    } else {
      w.add_tensor_generated(s.name, type, std::move(ne),
                             [&o, &pool, &progress, type, n_rows, name = s.name, row_length = s.ne[0]](std::span<std::uint8_t> bytes) {
                               fill_matrix(bytes, type, name, o.seed, n_rows, row_length, pool);
                               progress.advance(bytes.size());
                             });
    }
  }
  w.write(out_path);
  progress.finish();
  return result;
}

}  // namespace powerinfer2::tools
