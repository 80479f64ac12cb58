// llama2.c checkpoints (run.c's legacy "version 0" format) and tokenizer files, and their
// conversion to a standard llama GGUF.
//
// Checkpoint: a header of 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size, seq_len; a negative vocab_size means the classifier is not shared with the
// embedding and is stored last), then float32 arrays, row-major, [out, in] for matrices:
// token_embedding_table [vocab, dim], rms_att [L, dim], wq [L, n_heads*hs, dim],
// wk [L, n_kv_heads*hs, dim], wv (as wk), wo [L, dim, n_heads*hs], rms_ffn [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], rms_final [dim], two unused
// RoPE tables [seq_len, hs/2] each, and wcls [vocab, dim] only when not shared.
//
// Tokenizer file: int32 max_token_length, then per token float32 score, int32 length and
// the piece's bytes (spaces as ' ', BOS/EOS as "\n<s>\n" / "\n</s>\n").
//
// Q/K layout: llama2.c rotates adjacent pairs (x[2i], x[2i+1]) of each head, which is what
// llama.cpp's normal (non-NEOX) RoPE does on llama GGUF tensors, so wq and wk are copied as
// they are. Only Hugging Face checkpoints (rotate_half) need the convert script's permute;
// llama.cpp's own convert-llama2c-to-ggml copies them unpermuted too.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/mapped_file.hpp"

namespace powerinfer2::io {

/// The checkpoint header, checked: every field positive, n_heads divides dim, n_kv_heads
/// divides n_heads, an even head size.
struct Llama2cConfig {
  std::int32_t dim = 0;
  std::int32_t hidden_dim = 0;
  std::int32_t n_layers = 0;
  std::int32_t n_heads = 0;
  std::int32_t n_kv_heads = 0;
  std::int32_t vocab_size = 0;  // |the header's value|
  std::int32_t seq_len = 0;
  bool shared_classifier = true;  // the header's vocab_size was positive

  std::int32_t head_size() const { return dim / n_heads; }
  std::int32_t kv_dim() const { return head_size() * n_kv_heads; }
};

/// One float32 array of a checkpoint, in file order, and the GGUF tensor it becomes.
struct Llama2cArray {
  std::string name;                  // GGUF tensor name; empty for the unused RoPE tables
  std::vector<std::uint64_t> shape;  // GGUF shape, ne[0] (the row length) first
  std::uint64_t offset_bytes = 0;    // from the start of the file
  std::uint64_t size_bytes = 0;      // saturates at UINT64_MAX for absurd headers
};

/// Every array of a checkpoint with this header, in file order: the one list that the size
/// check, the tensor views and the conversion use.
std::vector<Llama2cArray> llama2c_layout(const Llama2cConfig& config);

/// The file size the header implies (UINT64_MAX when it does not fit in 64 bits).
std::uint64_t llama2c_file_size(const Llama2cConfig& config);

/// A mapped, validated checkpoint. InputError (naming the file) for a short file, a bad
/// header field, a newer export version, or a size other than the header implies;
/// IoError when the file cannot be read.
class Llama2cCheckpoint {
 public:
  explicit Llama2cCheckpoint(std::string path);
  Llama2cCheckpoint(const Llama2cCheckpoint&) = delete;
  Llama2cCheckpoint& operator=(const Llama2cCheckpoint&) = delete;

  const std::string& path() const { return map_.path(); }
  const Llama2cConfig& config() const { return config_; }
  const std::vector<Llama2cArray>& arrays() const { return arrays_; }
  /// The bytes of an array inside the mapping (valid while the checkpoint lives).
  std::span<const std::uint8_t> bytes(const Llama2cArray& array) const;

 private:
  common::MappedFile map_;
  Llama2cConfig config_;
  std::vector<Llama2cArray> arrays_;
};

/// A llama2.c tokenizer file as stored.
struct Llama2cVocab {
  std::int32_t max_token_length = 0;
  std::vector<std::string> pieces;
  std::vector<float> scores;
};

/// Reads a tokenizer file, which must hold exactly `expected_tokens` tokens (the
/// checkpoint's vocabulary size; `checkpoint` names it in the message).
Llama2cVocab read_llama2c_tokenizer(const std::string& path, std::size_t expected_tokens,
                                    const std::string& checkpoint);

/// Converts a checkpoint and its tokenizer into a GGUF v3 file (architecture llama, F32
/// tensors, SentencePiece vocabulary) written atomically to `out_path`: an error leaves no
/// file behind. Returns the checkpoint's header.
Llama2cConfig import_llama2c(const std::string& checkpoint_path, const std::string& tokenizer_path,
                             const std::string& out_path);

}  // namespace powerinfer2::io
