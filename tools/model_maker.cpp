#include "model_maker.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>

#include "common/errors.hpp"
#include "common/progress.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "io/llama_metadata.hpp"
#include "io/spm_vocab.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"
#include "prep/quantize_file.hpp"

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

std::uint64_t row_state(std::uint64_t seed, std::string_view tensor, std::uint64_t row) {
  return mix64(seed ^ mix64(fnv1a(tensor) + row * kGolden));
}

// One draw's four 16-bit fields summed and centred: an integer in [-131070, 131070].
std::int32_t irwin_hall(std::uint64_t r) {
  return static_cast<std::int32_t>((r & 0xffff) + ((r >> 16) & 0xffff) + ((r >> 32) & 0xffff) + (r >> 48)) -
         kIrwinHallMean;
}

// The first out.size() centred integers of row `row` of stream `tensor` (generate_row's
// draws before scaling), as doubles.
void draw_integers(std::uint64_t seed, std::string_view tensor, std::uint64_t row, std::span<double> out) {
  std::uint64_t state = row_state(seed, tensor, row);
  for (double& x : out) {
    state += kGolden;
    x = irwin_hall(mix64(state));
  }
}

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
  if (s.n_layer == 0) throw common::SettingError("layers", "must be positive");
  positive(s.n_head, "the head count");
  positive(s.n_kv_head, "the KV head count");
  if (s.n_ctx == 0) throw common::SettingError("ctx", "must be positive");
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

// A sparse model's residual subspace span(C) (model_maker.hpp): C is k x dim, column 0 zero.
// Its matrices hold centred Irwin-Hall integers (as doubles); a product of two such
// matrices is summed in double, exactly (|term| < 2^34, k terms < 2^41 < 2^53), so the order
// of the sum, FMA contraction and the thread count cannot change a bit.
struct Subspace {
  std::size_t k = 0;
  std::vector<double> basis;    // [k][dim]: C / basis_scale
  std::vector<double> basis_t;  // [dim][k]: its transpose
  double basis_scale = 0.0;    // C's element std 1/sqrt(k), over the integers' sigma
};

Subspace make_subspace(std::uint64_t seed, std::size_t dim) {
  Subspace s;
  s.k = subspace_rank(static_cast<std::uint32_t>(dim));
  s.basis.resize(s.k * dim);
  s.basis_t.resize(dim * s.k);
  s.basis_scale = 1.0 / std::sqrt(static_cast<double>(s.k)) / kIrwinHallSigma;
  for (std::size_t c = 0; c < s.k; ++c) {
    const std::span<double> row(s.basis.data() + c * dim, dim);
    draw_integers(seed, "powerinfer2.subspace", c, row);
    row[0] = 0.0;  // the bias channel is outside the subspace
    for (std::size_t j = 0; j < dim; ++j) s.basis_t[j * s.k + c] = row[j];
  }
  return s;
}

// How a sparse model's tensor departs from the plain scheme (model_maker.hpp).
struct Shaping {
  float std_dev = 0.0f;             // the rows' standard deviation
  bool zero_row0 = false;           // row 0 all zeros: nothing writes residual channel 0
  bool first_one = false;           // element 0 of every row is 1 (the bias channel)
  std::vector<float> first_per_row;  // element 0 of row r (the neurons' biases); empty: kept
  // Rows as combinations of k integer rows (`factor`, [k][row_length]) with exact double
  // sums, times `combine_scale`. Embedding: row t = z_t C, z_t row t's first k draws (factor =
  // C). Column space: row j = C[:, j]^T D (factor = D, coefficients C's column j).
  enum class Combine { none, embedding, column_space } combine = Combine::none;
  const Subspace* subspace = nullptr;
  std::vector<double> factor;
  double combine_scale = 0.0;
};

// out[r][:] = scale * sum_c coef[r][c] factor[c][:] for n_rows rows (coef [n_rows][k],
// factor [k][n], out [n_rows][n]). Blocks of kRows x kCols sums stay in registers while c
// runs (AVX-512: 24 accumulators; everything is double already, so the loop is all loads and
// FMAs); a kCols-wide strip of `factor` stays in cache for every row block.
void combine_rows(std::span<const double> factor, std::size_t k, std::size_t n, std::span<const double> coef,
                  std::size_t n_rows, double scale, std::span<float> out) {
  constexpr std::size_t kRows = 6, kCols = 32;
  for (std::size_t i0 = 0; i0 < n; i0 += kCols) {
    const std::size_t width = std::min(kCols, n - i0);
    for (std::size_t r0 = 0; r0 < n_rows; r0 += kRows) {
      double acc[kRows][kCols] = {};
      if (width == kCols && r0 + kRows <= n_rows) {
        for (std::size_t c = 0; c < k; ++c) {
          const double* src = factor.data() + c * n + i0;
          for (std::size_t r = 0; r < kRows; ++r) {
            const double f = coef[(r0 + r) * k + c];
            for (std::size_t i = 0; i < kCols; ++i) acc[r][i] += f * src[i];
          }
        }
      } else {  // the edges
        for (std::size_t c = 0; c < k; ++c) {
          const double* src = factor.data() + c * n + i0;
          for (std::size_t r = 0; r < std::min(kRows, n_rows - r0); ++r) {
            const double f = coef[(r0 + r) * k + c];
            for (std::size_t i = 0; i < width; ++i) acc[r][i] += f * src[i];
          }
        }
      }
      for (std::size_t r = 0; r < std::min(kRows, n_rows - r0); ++r)
        for (std::size_t i = 0; i < width; ++i)
          out[(r0 + r) * n + i0 + i] = static_cast<float>(acc[r][i] * scale);
    }
  }
}

// Fills one matrix: rows generated in parallel, each converted to `type`.
void fill_matrix(std::span<std::uint8_t> bytes, GgmlType type, const std::string& name, std::uint64_t seed,
                 std::size_t n_rows, std::size_t row_length, const Shaping& shaping, common::ThreadPool& pool) {
  const std::size_t row_bytes = static_cast<std::size_t>(*io::ggml_row_bytes(type, row_length));
  PWPI_CHECK(bytes.size() == n_rows * row_bytes);
  PWPI_CHECK(shaping.first_per_row.empty() || shaping.first_per_row.size() == n_rows);
  const bool combined = shaping.combine != Shaping::Combine::none;
  std::size_t grain = std::max<std::size_t>(1, (std::size_t{1} << 16) / row_length);
  if (combined) grain = std::max<std::size_t>(grain, 32);  // rows sharing each tile of the factor
  pool.parallel_for(0, n_rows, grain, [&](std::size_t r0, std::size_t r1) {
    std::vector<float> rows(combined ? (r1 - r0) * row_length : row_length);
    if (combined) {
      const Subspace& sub = *shaping.subspace;
      std::vector<double> coef((r1 - r0) * sub.k);
      for (std::size_t r = r0; r < r1; ++r) {
        const std::span<double> c(coef.data() + (r - r0) * sub.k, sub.k);
        if (shaping.combine == Shaping::Combine::embedding) {
          draw_integers(seed, name, r, c);
        } else {
          std::copy_n(sub.basis_t.begin() + static_cast<std::ptrdiff_t>(r * sub.k), sub.k, c.begin());
        }
      }
      combine_rows(shaping.factor, sub.k, row_length, coef, r1 - r0, shaping.combine_scale, rows);
    }
    for (std::size_t r = r0; r < r1; ++r) {
      const std::span<float> row = combined ? std::span<float>(rows).subspan((r - r0) * row_length, row_length)
                                            : std::span<float>(rows);
      if (!combined) generate_row(seed, name, r, shaping.std_dev, row);
      if (shaping.zero_row0 && r == 0) std::fill(row.begin(), row.end(), 0.0f);
      if (shaping.first_one) row[0] = 1.0f;
      if (!shaping.first_per_row.empty()) row[0] = shaping.first_per_row[r];
      std::uint8_t* dst = bytes.data() + r * row_bytes;
      ops::quantize_row(type, row.data(), dst, row_length);
    }
  });
}

// x with P(N(0,1) > x) = q, by bisection (q in (0, 1)).
double upper_quantile(double q) {
  double lo = -12.0, hi = 12.0;
  for (int i = 0; i < 80; ++i) {
    const double mid = 0.5 * (lo + hi);
    (0.5 * std::erfc(mid / std::sqrt(2.0)) > q ? lo : hi) = mid;
  }
  return 0.5 * (lo + hi);
}

// "blk.N.suffix" -> N and suffix; -1 for other names.
int layer_of(const std::string& name, std::string& suffix) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const std::size_t dot = name.find('.', 4);
  suffix = name.substr(dot + 1);
  return std::stoi(name.substr(4, dot - 4));
}

constexpr double kHotShare = 0.8;   // the hot fraction carries this share of the firings
constexpr double kMaxFiring = 0.95;  // no neuron fires on every token

// The shaping of matrix `name` in a sparse model (sparsity > 0).
Shaping sparse_shaping(const MakeModelOptions& o, const model::ModelConfig& c, const Subspace& sub,
                       const std::string& name, std::uint64_t row_length) {
  Shaping s;
  s.std_dev = weight_std(row_length);
  std::string suffix;
  const int layer = layer_of(name, suffix);
  if (name == "token_embd.weight") {
    // Elements 1.. = z_t C: variance k * 1 * (1/k) = 1.
    s.std_dev = 1.0f;
    s.first_one = true;
    s.combine = Shaping::Combine::embedding;
    s.subspace = &sub;
    s.factor = sub.basis;
    s.combine_scale = sub.basis_scale / kIrwinHallSigma;
  } else if (suffix == "attn_output.weight" || suffix == "ffn_down.weight") {
    // C^T D with D's element std the plain one: element variance k * (1/k) * std^2 = std^2.
    s.std_dev *= static_cast<float>(1.0 / std::sqrt(2.0 * c.n_layer));
    s.zero_row0 = true;  // already zero: C's column 0 is
    s.combine = Shaping::Combine::column_space;
    s.subspace = &sub;
    s.factor.resize(sub.k * row_length);
    for (std::size_t r = 0; r < sub.k; ++r)
      draw_integers(o.seed, name + ":subspace", r, std::span<double>(s.factor).subspan(r * row_length, row_length));
    s.combine_scale = sub.basis_scale * (static_cast<double>(s.std_dev) / kIrwinHallSigma);
  } else if (suffix == "ffn_gate.weight" ||
             (suffix == "ffn_up.weight" && o.activation == model::FfnActivation::drelu)) {
    const bool drelu = o.activation == model::FfnActivation::drelu;
    const std::vector<double> p =
        firing_probabilities(o.seed, static_cast<std::uint32_t>(layer), c.ffn_dim, o.sparsity, o.hot_fraction);
    const double to_weight = 1.0 / std::sqrt(static_cast<double>(c.dim));  // xb[0] ~ sqrt(dim)
    s.first_per_row.resize(p.size());
    for (std::size_t i = 0; i < p.size(); ++i)
      s.first_per_row[i] = static_cast<float>(-upper_quantile(drelu ? std::sqrt(p[i]) : p[i]) * to_weight);
  }
  return s;
}

}  // namespace

std::vector<double> firing_probabilities(std::uint64_t seed, std::uint32_t layer, std::uint32_t ffn_dim,
                                         double sparsity, double hot_fraction) {
  PWPI_CHECK(sparsity > 0.0 && sparsity < 1.0 && hot_fraction > 0.0 && hot_fraction <= kHotShare);
  // p(u) = c exp(-u / lambda) over uniform u: the top h carry (1 - e^(-h/l)) / (1 - e^(-1/l))
  // of the mass, a decreasing function of lambda.
  double l_lo = 1e-3, l_hi = 1e3;
  for (int i = 0; i < 100; ++i) {
    const double l = std::sqrt(l_lo * l_hi);
    ((1.0 - std::exp(-hot_fraction / l)) / (1.0 - std::exp(-1.0 / l)) > kHotShare ? l_lo : l_hi) = l;
  }
  const double lambda = l_hi;
  std::vector<double> u(ffn_dim);
  std::uint64_t state = mix64(seed ^ mix64(fnv1a("powerinfer2.hotness") + layer * kGolden));
  for (double& x : u) {
    state += kGolden;
    x = (static_cast<double>(mix64(state) >> 11) + 0.5) * 0x1p-53;
  }
  const double target = 1.0 - sparsity;
  auto mean_at = [&](double c) {
    double sum = 0.0;
    for (double x : u) sum += std::min(kMaxFiring, c * std::exp(-x / lambda));
    return sum / static_cast<double>(u.size());
  };
  double lo = 0.0, hi = 1e6;  // mean_at(hi) is the cap: a target above it gives the cap
  for (int i = 0; i < 200; ++i) {
    const double mid = 0.5 * (lo + hi);
    (mean_at(mid) < target ? lo : hi) = mid;
  }
  std::vector<double> p(ffn_dim);
  for (std::size_t i = 0; i < p.size(); ++i) p[i] = std::min(kMaxFiring, hi * std::exp(-u[i] / lambda));
  return p;
}

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

std::uint32_t subspace_rank(std::uint32_t dim) { return std::min(dim - 1, std::max(8u, dim / 32)); }

float weight_std(std::uint64_t row_length) {
  return static_cast<float>(1.0 / std::sqrt(static_cast<double>(row_length)));
}

void generate_row(std::uint64_t seed, std::string_view tensor, std::uint64_t row, float std_dev,
                  std::span<float> out) {
  std::uint64_t state = row_state(seed, tensor, row);
  const float scale = static_cast<float>(static_cast<double>(std_dev) / kIrwinHallSigma);
  for (float& x : out) {
    state += kGolden;
    x = static_cast<float>(irwin_hall(mix64(state))) * scale;  // exact integer, one rounding
  }
}

MakeModelResult make_model(const MakeModelOptions& o, const std::string& out_path, common::ThreadPool& pool) {
  if (o.type != GgmlType::F32 && o.type != GgmlType::F16 && o.type != GgmlType::Q8_0 && o.type != GgmlType::Q4_0)
    throw common::UsageError("cannot write weights of type " + std::string(io::ggml_type_name(o.type)),
                             "valid types: f32, f16, q8_0, q4_0");
  ModelShape shape = o.shape;
  check_shape(shape);
  const bool sparse = o.sparsity > 0.0;
  if (o.sparsity < 0.0 || o.sparsity >= 0.99)
    throw common::SettingError("sparsity", "must be in [0, 0.99), got " + std::to_string(o.sparsity));
  if (o.hot_fraction <= 0.0 || o.hot_fraction > kHotShare)
    throw common::SettingError("hot-fraction", "must be in (0, 0.8], got " + std::to_string(o.hot_fraction));
  if (sparse && o.activation == model::FfnActivation::swiglu)
    throw common::SettingError("sparsity", "needs a ReGLU or dReLU activation (SiLU is never exactly zero)",
                               "choose reglu or drelu", "activation");
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
  io::LlamaMetadata m;
  m.name = "make-model " + shape.name + " " + std::string(model::activation_name(o.activation)) + " seed " +
           std::to_string(o.seed);
  m.file_type = prep::llama_file_type(o.type);  // LLAMA_FTYPE_ALL_F32 / MOSTLY_*
  m.n_layer = c.n_layer;
  m.n_ctx = c.n_ctx;
  m.dim = c.dim;
  m.ffn_dim = c.ffn_dim;
  m.n_head = c.n_head;
  m.n_kv_head = c.n_kv_head;
  m.n_rot = c.n_rot;
  m.vocab = c.vocab;
  m.rope_base = c.rope_base;
  m.rms_eps = c.rms_eps;
  io::GgufWriter w;
  io::set_llama_metadata(w, m, io::LlamaKeyOrder::convert_hf);
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
  const Subspace subspace = sparse ? make_subspace(o.seed, c.dim) : Subspace{};
  common::ProgressBar progress("make-model", result.tensor_bytes);
  for (const model::TensorSlot& s : slots) {
    std::vector<std::uint64_t> ne(s.ne, s.ne + s.n_dims);  // ne[0] = row length
    const GgmlType type = tensor_type(o.type, s.n_dims, s.ne[0]);
    const std::size_t n_rows = s.n_dims == 1 ? 1 : s.ne[1];
    result.n_params += std::uint64_t{s.ne[0]} * n_rows;
    ++result.n_tensors;
    if (s.n_dims >= 2 && type != o.type) result.kept_f16.push_back(s.name);
    if (s.n_dims == 1) {
      // A sparse model's ffn_norm carries the bias channel at sqrt(dim) (model_maker.hpp).
      const float first = sparse && s.name.ends_with("ffn_norm.weight")
                              ? static_cast<float>(std::sqrt(static_cast<double>(c.dim)))
                              : 1.0f;
      w.add_tensor_generated(s.name, type, std::move(ne), [&progress, first](std::span<std::uint8_t> bytes) {
        const float one = 1.0f;
        for (std::size_t i = 0; i < bytes.size(); i += sizeof one) std::memcpy(bytes.data() + i, &one, sizeof one);
        std::memcpy(bytes.data(), &first, sizeof first);
        progress.advance(bytes.size());
      });
    } else {
      w.add_tensor_generated(s.name, type, std::move(ne),
                             [&o, &c, &pool, &progress, &subspace, sparse, type, n_rows, name = s.name, row_length = s.ne[0]](std::span<std::uint8_t> bytes) {
                               Shaping shaping;
                               shaping.std_dev = weight_std(row_length);
                               if (sparse) shaping = sparse_shaping(o, c, subspace, name, row_length);
                               fill_matrix(bytes, type, name, o.seed, n_rows, row_length, shaping, pool);
                               progress.advance(bytes.size());
                             });
    }
  }
  w.write(out_path);
  progress.finish();
  return result;
}

}  // namespace powerinfer2::tools
