// The SentencePiece-style BPE tokenizer of llama models (GGUF tokenizer.ggml.model "llama"),
// encoding exactly as llama.cpp's llm_tokenizer_spm does:
//   1. spaces become U+2581 "▁", and a leading "▁" is added to non-empty text (add_space_prefix);
//   2. the text is split into UTF-8 characters (a byte that cannot start a character is one);
//   3. the adjacent pair whose concatenation is a vocabulary piece with the highest score is
//      merged, repeatedly (ties: the leftmost pair); a priority queue over a linked list of
//      symbols keeps this O(n log n);
//   4. each symbol becomes its id, or one byte token <0xNN> per byte when it is not a piece.
// Decoding turns "▁" back into spaces, byte tokens into their bytes, and control tokens into
// nothing.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf_reader.hpp"

namespace powerinfer2::model {

using TokenId = std::int32_t;

/// A token's type as GGUF stores it (tokenizer.ggml.token_type, llama.cpp's llama_token_type).
enum class TokenType : std::int32_t {
  undefined = 0,
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6,
};

/// A vocabulary as stored: piece, score and type per id, the special ids and the flags.
struct Vocabulary {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<TokenType> types;
  TokenId bos_id = 1;
  TokenId eos_id = 2;
  TokenId unk_id = 0;
  bool add_bos = true;           // tokenizer.ggml.add_bos_token: BOS is fed before a prompt
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix
};

class Tokenizer {
 public:
  /// Reads the vocabulary from a GGUF file's tokenizer.ggml.* metadata. InputError naming the
  /// file and key for a missing key, arrays of different lengths, an id outside the
  /// vocabulary, or a tokenizer model other than "llama" (e.g. "gpt2", not supported yet).
  static Tokenizer from_gguf(const io::GgufFile& file);

  /// From a vocabulary already in memory; `source` names it in error messages.
  Tokenizer(Vocabulary vocab, const std::string& source);

  std::size_t size() const { return vocab_.pieces.size(); }
  const Vocabulary& vocabulary() const { return vocab_; }
  TokenId bos_id() const { return vocab_.bos_id; }
  TokenId eos_id() const { return vocab_.eos_id; }
  TokenId unk_id() const { return vocab_.unk_id; }
  bool add_bos() const { return vocab_.add_bos; }

  /// The vocabulary piece of `id` as stored ("▁Hello", "<0x0A>", "<s>").
  std::string_view piece(TokenId id) const;
  TokenType type(TokenId id) const;
  float score(TokenId id) const;
  /// The id of a piece, or -1 when it is not in the vocabulary (the last id wins when a
  /// piece is listed twice, as in llama.cpp).
  TokenId find(std::string_view piece) const;

  /// Token ids of `text`, with BOS first when `add_bos`. Empty text gives no ids (BOS only).
  std::vector<TokenId> encode(std::string_view text, bool add_bos) const;
  /// The same, appended to `out`.
  void encode(std::string_view text, bool add_bos, std::vector<TokenId>& out) const;

  /// The bytes token `id` stands for in text: a normal piece with "▁" as " ", a byte token's
  /// byte, a user-defined piece as is; nothing for control, unknown and unused tokens.
  std::string_view text(TokenId id) const;

  /// Appends the text of `id` following `prev` (-1 at the start of a sequence). With
  /// `strip_space_prefix`, one leading space is dropped when `id` is the first token or
  /// follows BOS: that space is the one encode() added (llama2.c and llama.cpp do the same).
  void append_text(TokenId prev, TokenId id, bool strip_space_prefix, std::string& out) const;

  /// The text of a token sequence (byte tokens concatenate into UTF-8 characters).
  /// decode(encode(s, false), true) == s for every s.
  std::string decode(std::span<const TokenId> ids, bool strip_space_prefix) const;

 private:
  void check_id(TokenId id) const;

  Vocabulary vocab_;
  io::StringIndex index_;            // piece -> id
  std::vector<std::string> texts_;   // id -> decoded bytes
  std::array<TokenId, 256> byte_ids_{};  // byte -> id of <0xNN> (or fallback)
};

}  // namespace powerinfer2::model
