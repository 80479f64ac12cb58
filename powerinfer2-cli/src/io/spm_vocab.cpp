#include "io/spm_vocab.hpp"

#include "common/errors.hpp"

namespace powerinfer2::io {

std::string byte_piece(std::uint8_t byte) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string("<0x") + kHex[byte >> 4] + kHex[byte & 15] + ">";
}

SpmVocab byte_level_spm_vocab(std::size_t size) {
  PWPI_CHECK_MSG(size >= 260, "a byte-level vocabulary needs at least 260 tokens, asked for " + std::to_string(size));
  SpmVocab v;
  v.tokens.reserve(size);
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.types = {token_type::unknown, token_type::control, token_type::control};
  for (int b = 0; b < 256; ++b) {
    v.tokens.push_back(byte_piece(static_cast<std::uint8_t>(b)));
    v.types.push_back(token_type::byte);
  }
  // "▁" (a space) as a normal piece, so spaces decode as spaces and not as the bytes of "▁".
  v.tokens.push_back("\xe2\x96\x81");
  v.types.push_back(token_type::normal);
  for (std::size_t i = 0; v.tokens.size() < size; ++i) {
    v.tokens.push_back("<unused" + std::to_string(i) + ">");
    v.types.push_back(token_type::unused);
  }
  v.scores.assign(size, 0.0f);
  return v;
}

void set_spm_vocab(GgufWriter& w, SpmVocab vocab) {
  PWPI_CHECK(vocab.tokens.size() == vocab.scores.size() && vocab.tokens.size() == vocab.types.size());
  w.set("tokenizer.ggml.model", "llama");
  if (!vocab.pre.empty()) w.set("tokenizer.ggml.pre", vocab.pre);
  w.set_array("tokenizer.ggml.tokens", std::move(vocab.tokens));
  w.set_array("tokenizer.ggml.scores", std::move(vocab.scores));
  w.set_array("tokenizer.ggml.token_type", std::move(vocab.types));
  w.set("tokenizer.ggml.bos_token_id", vocab.bos_id);
  w.set("tokenizer.ggml.eos_token_id", vocab.eos_id);
  w.set("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  w.set("tokenizer.ggml.add_bos_token", vocab.add_bos);
  w.set("tokenizer.ggml.add_eos_token", vocab.add_eos);
}

}  // namespace powerinfer2::io
