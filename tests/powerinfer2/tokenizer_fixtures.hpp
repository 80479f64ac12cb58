// A small hand-made SentencePiece vocabulary for the tokenizer tests, written with the
// project's GgufWriter. Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 the byte tokens <0x00>..<0xFF>
// (so byte b is id b + 3), then the normal pieces below.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "io/gguf_writer.hpp"

namespace tokfix {

namespace io = powerinfer2::io;

inline constexpr std::int32_t kSpace = 259;    // "▁"       -1
inline constexpr std::int32_t kA = 260;        // "a"       -1
inline constexpr std::int32_t kB = 261;        // "b"       -1
inline constexpr std::int32_t kC = 262;        // "c"       -1
inline constexpr std::int32_t kAB = 263;       // "ab"      -5
inline constexpr std::int32_t kBC = 264;       // "bc"      -2
inline constexpr std::int32_t kSpaceA = 265;   // "▁a"      -3
inline constexpr std::int32_t kSpaceB = 266;   // "▁b"      -4
inline constexpr std::int32_t kEAcute = 267;   // "é"       -1
inline constexpr std::int32_t kSpace2 = 268;   // "▁▁"      -6
inline constexpr std::int32_t kAA = 269;       // "aa"      -2
inline constexpr std::int32_t kVocabSize = 270;

inline std::int32_t byte_id(unsigned char b) { return 3 + b; }

struct VocabSpec {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<std::int32_t> types;
};

inline VocabSpec small_vocab() {
  VocabSpec v;
  auto add = [&](std::string piece, float score, std::int32_t type) {
    v.tokens.push_back(std::move(piece));
    v.scores.push_back(score);
    v.types.push_back(type);
  };
  add("<unk>", 0, 2);
  add("<s>", 0, 3);
  add("</s>", 0, 3);
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) add(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">", 0, 6);
  const std::string sp = "\xe2\x96\x81";
  add(sp, -1, 1);
  add("a", -1, 1);
  add("b", -1, 1);
  add("c", -1, 1);
  add("ab", -5, 1);
  add("bc", -2, 1);
  add(sp + "a", -3, 1);
  add(sp + "b", -4, 1);
  add("\xc3\xa9", -1, 1);
  add(sp + sp, -6, 1);
  add("aa", -2, 1);
  return v;
}

/// Writes a vocabulary-only GGUF; `edit` may change the writer before it is written.
inline std::string write_vocab(const std::filesystem::path& path, const VocabSpec& v,
                               const std::function<void(io::GgufWriter&)>& edit = {}) {
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set("tokenizer.ggml.model", "llama");
  w.set_array("tokenizer.ggml.tokens", v.tokens);
  w.set_array("tokenizer.ggml.scores", v.scores);
  w.set_array("tokenizer.ggml.token_type", v.types);
  w.set("tokenizer.ggml.bos_token_id", std::uint32_t{1});
  w.set("tokenizer.ggml.eos_token_id", std::uint32_t{2});
  w.set("tokenizer.ggml.unknown_token_id", std::uint32_t{0});
  if (edit) edit(w);
  w.write(path.string());
  return path.string();
}

}  // namespace tokfix
