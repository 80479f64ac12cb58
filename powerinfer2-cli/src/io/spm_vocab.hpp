// A SentencePiece ("llama") vocabulary as llama.cpp stores it in GGUF metadata
// (tokenizer.ggml.*), for the tools that write one: the llama2.c importer and
// tools/make-model. Reading it back is model::Tokenizer's business.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/gguf_writer.hpp"

namespace powerinfer2::io {

/// llama.cpp's llama_token_type, the values of tokenizer.ggml.token_type.
namespace token_type {
inline constexpr std::int32_t normal = 1, unknown = 2, control = 3, user_defined = 4, unused = 5, byte = 6;
}  // namespace token_type

struct SpmVocab {
  std::vector<std::string> tokens;  // pieces, "▁" (U+2581) for a space
  std::vector<float> scores;        // merge priority: higher merges first
  std::vector<std::int32_t> types;  // token_type::*
  std::uint32_t bos_id = 1, eos_id = 2, unk_id = 0;
  bool add_bos = true, add_eos = false;
  std::string pre;  // tokenizer.ggml.pre ("default" as llama.cpp's converter writes); empty: not written
};

/// "<0x0A>" for byte 0x0A: the piece of a byte token.
std::string byte_piece(std::uint8_t byte);

/// A byte-level vocabulary of `size` tokens (at least 260): <unk> 0, <s> 1, </s> 2, the byte
/// tokens <0x00>..<0xFF> at 3..258, "▁" (a space, normal) at 259, then "<unused0>",
/// "<unused1>", ... of type unused; all scores 0. Any text encodes (a space to 259, any other
/// byte to its byte token) and decodes back.
SpmVocab byte_level_spm_vocab(std::size_t size);

/// Sets tokenizer.ggml.model ("llama"), .pre (when set), .tokens, .scores, .token_type,
/// .bos_token_id, .eos_token_id, .unknown_token_id, .add_bos_token, .add_eos_token, in
/// that order. The three arrays must have the same length (a bug otherwise).
void set_spm_vocab(GgufWriter& w, SpmVocab vocab);

}  // namespace powerinfer2::io
