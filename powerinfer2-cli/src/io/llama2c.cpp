#include "io/llama2c.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_writer.hpp"
#include "io/llama_metadata.hpp"
#include "io/spm_vocab.hpp"

namespace powerinfer2::io {

namespace {

constexpr std::uint64_t kHeaderBytes = 7 * sizeof(std::int32_t);
constexpr std::uint64_t kSaturated = std::numeric_limits<std::uint64_t>::max();
// llama2.c's export.py version 1 and 2 files start with this uint32 ("ak42"), then a version.
constexpr std::uint32_t kNewExportMagic = 0x616b3432;

// Saturating arithmetic: an absurd header gives UINT64_MAX, never a wrapped size.
std::uint64_t mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  return __builtin_mul_overflow(a, b, &r) ? kSaturated : r;
}
std::uint64_t add(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  return __builtin_add_overflow(a, b, &r) ? kSaturated : r;
}

std::string size_text(std::uint64_t bytes) {
  return bytes == kSaturated ? "more than 2^64 bytes" : std::to_string(bytes) + " bytes";
}

template <class T>
T load(const std::uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

std::string describe(const Llama2cConfig& c) {
  return "dim " + std::to_string(c.dim) + ", hidden_dim " + std::to_string(c.hidden_dim) + ", n_layers " +
         std::to_string(c.n_layers) + ", n_heads " + std::to_string(c.n_heads) + ", n_kv_heads " +
         std::to_string(c.n_kv_heads) + ", vocab_size " + (c.shared_classifier ? "" : "-") +
         std::to_string(c.vocab_size) + ", seq_len " + std::to_string(c.seq_len);
}

Llama2cConfig parse_header(const std::string& path, const std::uint8_t* p, std::uint64_t size) {
  if (size < kHeaderBytes)
    throw common::InputError(common::Where(path), "a llama2.c checkpoint starting with a 28-byte header (7 int32)",
                             "a file of " + std::to_string(size) + " bytes",
                             size == 0 ? "" : "the file is truncated");
  if (load<std::uint32_t>(p) == kNewExportMagic) {
    common::Where w(path);
    w.byte_offset = 0;
    w.item = "header";
    throw common::InputError(w, "the legacy llama2.c format (version 0: 7 int32, then float32 weights)",
                             "the magic \"ak42\" of llama2.c's export version " +
                                 std::to_string(load<std::int32_t>(p + 4)),
                             "export it again with llama2.c's export.py --version 0");
  }
  static constexpr const char* kFields[7] = {"dim", "hidden_dim", "n_layers", "n_heads",
                                             "n_kv_heads", "vocab_size", "seq_len"};
  std::int32_t v[7];
  for (int i = 0; i < 7; ++i) {
    v[i] = load<std::int32_t>(p + 4 * i);
    const bool ok = i == 5 ? v[i] != 0 && v[i] != std::numeric_limits<std::int32_t>::min() : v[i] > 0;
    if (!ok) {
      common::Where w(path);
      w.byte_offset = 4 * i;
      w.item = std::string("header field ") + kFields[i];
      throw common::InputError(w, i == 5 ? "a non-zero integer (negative: unshared classifier)" : "a positive integer",
                               std::to_string(v[i]));
    }
  }
  Llama2cConfig c;
  c.dim = v[0];
  c.hidden_dim = v[1];
  c.n_layers = v[2];
  c.n_heads = v[3];
  c.n_kv_heads = v[4];
  c.shared_classifier = v[5] > 0;
  c.vocab_size = v[5] > 0 ? v[5] : -v[5];
  c.seq_len = v[6];

  common::Where w(path);
  w.item = "header";
  if (c.dim % c.n_heads != 0)
    throw common::InputError(w, "n_heads to divide dim",
                             "n_heads " + std::to_string(c.n_heads) + " and dim " + std::to_string(c.dim));
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0)
    throw common::InputError(w, "n_kv_heads to divide n_heads",
                             "n_kv_heads " + std::to_string(c.n_kv_heads) + " and n_heads " + std::to_string(c.n_heads));
  if (c.head_size() % 2 != 0)
    throw common::InputError(w, "an even head size dim / n_heads (RoPE rotates pairs)",
                             std::to_string(c.head_size()));
  return c;
}

}  // namespace

std::vector<Llama2cArray> llama2c_layout(const Llama2cConfig& c) {
  const std::uint64_t dim = static_cast<std::uint64_t>(c.dim), hidden = static_cast<std::uint64_t>(c.hidden_dim),
                      q_dim = static_cast<std::uint64_t>(c.n_heads) * static_cast<std::uint64_t>(c.head_size()),
                      kv_dim = static_cast<std::uint64_t>(c.kv_dim()), vocab = static_cast<std::uint64_t>(c.vocab_size),
                      rope_half = static_cast<std::uint64_t>(c.head_size() / 2),
                      seq_len = static_cast<std::uint64_t>(c.seq_len);
  std::vector<Llama2cArray> out;
  std::uint64_t offset = kHeaderBytes;
  auto put = [&](std::string name, std::vector<std::uint64_t> shape) {
    std::uint64_t bytes = sizeof(float);
    for (std::uint64_t d : shape) bytes = mul(bytes, d);
    out.push_back({std::move(name), std::move(shape), offset, bytes});
    offset = add(offset, bytes);
  };
  // Each per-layer array is stored for all layers at once: [n_layers, ...].
  auto per_layer = [&](const char* suffix, std::vector<std::uint64_t> shape) {
    for (std::int32_t l = 0; l < c.n_layers; ++l) put("blk." + std::to_string(l) + "." + suffix, shape);
  };
  // GGUF shapes are ne[0] first: a row-major [out, in] matrix is [in, out].
  put("token_embd.weight", {dim, vocab});
  per_layer("attn_norm.weight", {dim});
  per_layer("attn_q.weight", {dim, q_dim});
  per_layer("attn_k.weight", {dim, kv_dim});
  per_layer("attn_v.weight", {dim, kv_dim});
  per_layer("attn_output.weight", {q_dim, dim});
  per_layer("ffn_norm.weight", {dim});
  per_layer("ffn_gate.weight", {dim, hidden});  // w1
  per_layer("ffn_down.weight", {hidden, dim});  // w2
  per_layer("ffn_up.weight", {dim, hidden});    // w3
  put("output_norm.weight", {dim});
  put("", {rope_half, seq_len});  // freq_cis_real, unused since llama2.c computes RoPE itself
  put("", {rope_half, seq_len});  // freq_cis_imag
  if (!c.shared_classifier) put("output.weight", {dim, vocab});
  return out;
}

std::uint64_t llama2c_file_size(const Llama2cConfig& config) {
  const std::vector<Llama2cArray> arrays = llama2c_layout(config);
  return add(arrays.back().offset_bytes, arrays.back().size_bytes);
}

Llama2cCheckpoint::Llama2cCheckpoint(std::string path) : map_(std::move(path)) {
  const std::string& p = map_.path();
  const std::uint64_t size = map_.size();
  config_ = parse_header(p, map_.data(), size);
  const std::uint64_t expected = llama2c_file_size(config_);
  if (expected != size) {
    std::string hint = size < expected ? "the file is truncated" : "the file has bytes past the last array";
    if (config_.shared_classifier &&
        size == add(expected, mul(4, mul(static_cast<std::uint64_t>(config_.dim),
                                         static_cast<std::uint64_t>(config_.vocab_size)))))
      hint = "the extra bytes are one [vocab_size, dim] classifier: a separate classifier is marked by a "
             "negative vocab_size";
    throw common::InputError(common::Where(p), size_text(expected) + " (the size the header implies: " +
                                                   describe(config_) + ")",
                             size_text(size), hint);
  }
  arrays_ = llama2c_layout(config_);
}

std::span<const std::uint8_t> Llama2cCheckpoint::bytes(const Llama2cArray& a) const {
  PWPI_CHECK(a.offset_bytes <= map_.size() && a.size_bytes <= map_.size() - a.offset_bytes);
  return {map_.data() + a.offset_bytes, static_cast<std::size_t>(a.size_bytes)};
}

Llama2cVocab read_llama2c_tokenizer(const std::string& path, std::size_t expected_tokens,
                                    const std::string& checkpoint) {
  const std::string data = common::read_file(path);
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  const std::uint64_t size = data.size();
  auto where = [&](std::uint64_t offset, std::string item) {
    common::Where w(path);
    w.byte_offset = static_cast<std::int64_t>(offset);
    w.item = std::move(item);
    return w;
  };
  if (size < 4)
    throw common::InputError(where(0, "header"), "a llama2.c tokenizer file starting with int32 max_token_length",
                             "a file of " + std::to_string(size) + " bytes");
  Llama2cVocab v;
  v.max_token_length = load<std::int32_t>(p);
  if (v.max_token_length <= 0)
    throw common::InputError(where(0, "max_token_length"), "a positive integer", std::to_string(v.max_token_length));
  std::uint64_t offset = 4;
  while (offset < size) {
    const std::string item = "token " + std::to_string(v.pieces.size());
    if (size - offset < 8)
      throw common::InputError(where(offset, item), "a float32 score and an int32 length",
                               std::to_string(size - offset) + " bytes before the end of the file",
                               "the file is truncated");
    const float score = load<float>(p + offset);
    const std::int32_t len = load<std::int32_t>(p + offset + 4);
    if (len < 0)
      throw common::InputError(where(offset + 4, item + " length"), "a length of 0 or more", std::to_string(len));
    offset += 8;
    if (static_cast<std::uint64_t>(len) > size - offset)
      throw common::InputError(where(offset, item), std::to_string(len) + " bytes of text",
                               std::to_string(size - offset) + " bytes before the end of the file",
                               "the file is truncated");
    v.scores.push_back(score);
    v.pieces.emplace_back(reinterpret_cast<const char*>(p + offset), static_cast<std::size_t>(len));
    offset += static_cast<std::uint64_t>(len);
  }
  if (v.pieces.size() != expected_tokens)
    throw common::InputError(common::Where(path),
                             std::to_string(expected_tokens) + " tokens (the vocab_size of " + checkpoint + ")",
                             std::to_string(v.pieces.size()) + " tokens",
                             "is this the tokenizer the model was trained with?");
  return v;
}

namespace {

bool is_byte_piece(const std::string& s) {
  auto hex = [](char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'A' && ch <= 'F') || (ch >= 'a' && ch <= 'f'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

// llama2.c's ids, fixed by its run.c (and by llama.cpp's convert-llama2c-to-ggml).
constexpr std::uint32_t kUnkId = 0, kBosId = 1, kEosId = 2;

}  // namespace

Llama2cConfig import_llama2c(const std::string& checkpoint_path, const std::string& tokenizer_path,
                             const std::string& out_path) {
  const Llama2cCheckpoint ckpt(checkpoint_path);
  const Llama2cConfig& c = ckpt.config();
  Llama2cVocab vocab = read_llama2c_tokenizer(tokenizer_path, static_cast<std::size_t>(c.vocab_size), checkpoint_path);

  // The vocabulary as SentencePiece stores it: "▁" for spaces, plain <s> and </s>.
  std::vector<std::int32_t> types(vocab.pieces.size(), token_type::normal);
  for (std::size_t i = 0; i < vocab.pieces.size(); ++i) {
    std::string& piece = vocab.pieces[i];
    if (i == kUnkId) {
      piece = "<unk>";
      types[i] = token_type::unknown;
    } else if (i == kBosId || i == kEosId) {
      piece = i == kBosId ? "<s>" : "</s>";
      types[i] = token_type::control;
    } else if (piece.empty()) {
      types[i] = token_type::control;
    } else if (is_byte_piece(piece)) {
      types[i] = token_type::byte;
    }
    std::string escaped;
    escaped.reserve(piece.size());
    for (char ch : piece) {
      if (ch == ' ') escaped += "\xe2\x96\x81";
      else escaped += ch;
    }
    piece = std::move(escaped);
  }

  LlamaMetadata m;
  m.name = std::filesystem::path(checkpoint_path).stem().string();
  m.file_type = 0;  // llama.cpp's LLAMA_FTYPE_ALL_F32
  m.vocab = static_cast<std::uint32_t>(c.vocab_size);
  m.n_ctx = static_cast<std::uint32_t>(c.seq_len);
  m.dim = static_cast<std::uint32_t>(c.dim);
  m.n_layer = static_cast<std::uint32_t>(c.n_layers);
  m.ffn_dim = static_cast<std::uint32_t>(c.hidden_dim);
  m.n_head = static_cast<std::uint32_t>(c.n_heads);
  m.n_kv_head = static_cast<std::uint32_t>(c.n_kv_heads);
  m.rms_eps = 1e-5f;  // run.c's rmsnorm
  m.n_rot = static_cast<std::uint32_t>(c.head_size());
  m.rope_base = 10000.0f;
  GgufWriter w;
  set_llama_metadata(w, m, LlamaKeyOrder::llama2c);
  SpmVocab spm;
  spm.tokens = std::move(vocab.pieces);
  spm.scores = std::move(vocab.scores);
  spm.types = std::move(types);
  spm.bos_id = kBosId;
  spm.eos_id = kEosId;
  spm.unk_id = kUnkId;
  set_spm_vocab(w, std::move(spm));

  // Tensors in the usual GGUF order (embedding, blocks 0.., final norm, classifier), each a
  // view into the mapped checkpoint; the file order inside a block is kept.
  std::vector<const Llama2cArray*> tensors;
  for (const Llama2cArray& a : ckpt.arrays())
    if (!a.name.empty()) tensors.push_back(&a);
  auto rank = [](const Llama2cArray* a) -> long {
    if (a->name == "token_embd.weight") return -1;
    if (a->name.rfind("blk.", 0) == 0) return std::stol(a->name.substr(4));
    return std::numeric_limits<long>::max();
  };
  std::stable_sort(tensors.begin(), tensors.end(),
                   [&](const Llama2cArray* a, const Llama2cArray* b) { return rank(a) < rank(b); });
  for (const Llama2cArray* a : tensors) w.add_tensor(a->name, GgmlType::F32, a->shape, ckpt.bytes(*a));

  w.write(out_path);
  return c;
}

}  // namespace powerinfer2::io
