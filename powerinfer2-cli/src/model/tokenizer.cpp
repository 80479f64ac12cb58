#include "model/tokenizer.hpp"

#include <algorithm>
#include <queue>

#include "common/errors.hpp"

namespace powerinfer2::model {

namespace {

constexpr std::string_view kSpaceMarker = "\xe2\x96\x81";  // U+2581 "▁", SentencePiece's space

constexpr const char* kKeyModel = "tokenizer.ggml.model";
constexpr const char* kKeyTokens = "tokenizer.ggml.tokens";
constexpr const char* kKeyScores = "tokenizer.ggml.scores";
constexpr const char* kKeyTypes = "tokenizer.ggml.token_type";
constexpr const char* kKeyBos = "tokenizer.ggml.bos_token_id";
constexpr const char* kKeyEos = "tokenizer.ggml.eos_token_id";
constexpr const char* kKeyUnk = "tokenizer.ggml.unknown_token_id";
constexpr const char* kKeyAddBos = "tokenizer.ggml.add_bos_token";
constexpr const char* kKeyAddSpace = "tokenizer.ggml.add_space_prefix";

common::Where key_where(const std::string& source, std::string_view key) {
  common::Where w(source);
  w.item = "metadata key " + std::string(key);
  return w;
}

// Bytes of the UTF-8 character starting with `lead`, from its high nibble as llama.cpp
// counts them: a continuation byte (10xx) counts as a character of its own.
std::size_t utf8_length(char lead) {
  static constexpr std::uint8_t kLength[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
  return kLength[static_cast<std::uint8_t>(lead) >> 4];
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// The byte of a piece "<0xNN>", or -1.
int byte_of_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string unescape_spaces(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (std::size_t i = 0; i < piece.size();) {
    if (piece.substr(i, kSpaceMarker.size()) == kSpaceMarker) {
      out += ' ';
      i += kSpaceMarker.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

// A symbol of the text being encoded: bytes [offset, offset + size) of the escaped text, in
// a doubly linked list (-1 ends it). A symbol merged into its left neighbour has size 0.
struct Symbol {
  std::int32_t prev, next;
  std::uint32_t offset, size;
};

// A candidate merge of symbols left and right; `size` is their combined size when the
// candidate was made, so a candidate outdated by another merge is recognised and skipped.
struct Bigram {
  float score;
  std::int32_t left, right;
  std::uint32_t size;
};

// Highest score first; on equal scores the leftmost pair.
struct BigramOrder {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  }
};

}  // namespace

Tokenizer Tokenizer::from_gguf(const io::GgufFile& file) {
  const std::string& model = file.get_string(kKeyModel);
  if (model != "llama") {
    const std::string what = model == "gpt2" ? "GPT-2-style byte-level BPE (\"gpt2\") is not supported yet"
                                             : "the tokenizer model \"" + model + "\" is not supported";
    throw common::InputError::message(key_where(file.path(), kKeyModel),
                                      what + "; supported: \"llama\" (SentencePiece)");
  }
  Vocabulary v;
  v.pieces = file.get_string_array(kKeyTokens);
  v.scores = file.get_f32_array(kKeyScores);
  const std::vector<std::int32_t> types = file.get_i32_array(kKeyTypes);
  v.types.reserve(types.size());
  for (std::size_t i = 0; i < types.size(); ++i) {
    if (types[i] < 0 || types[i] > static_cast<std::int32_t>(TokenType::byte))
      throw common::InputError(key_where(file.path(), kKeyTypes), "token types 0 to 6",
                               std::to_string(types[i]) + " at index " + std::to_string(i));
    v.types.push_back(static_cast<TokenType>(types[i]));
  }
  // Absent special ids take llama.cpp's defaults for SentencePiece vocabularies; the
  // constructor checks them against the vocabulary size.
  auto id_key = [&](const char* key, TokenId fallback) -> TokenId {
    if (!file.has(key)) return fallback;
    const std::int64_t id = file.get_i64(key);
    if (id < 0 || id > INT32_MAX)
      throw common::InputError(key_where(file.path(), key),
                               "a token id below the vocabulary size " + std::to_string(v.pieces.size()),
                               std::to_string(id));
    return static_cast<TokenId>(id);
  };
  v.bos_id = id_key(kKeyBos, 1);
  v.eos_id = id_key(kKeyEos, 2);
  v.unk_id = id_key(kKeyUnk, 0);
  v.add_bos = file.get_bool_or(kKeyAddBos, true);
  v.add_space_prefix = file.get_bool_or(kKeyAddSpace, true);
  return Tokenizer(std::move(v), file.path());
}

Tokenizer::Tokenizer(Vocabulary vocab, const std::string& source) : vocab_(std::move(vocab)) {
  const std::size_t n = vocab_.pieces.size();
  if (n == 0) throw common::InputError(key_where(source, kKeyTokens), "at least one token", "an empty array");
  if (n > static_cast<std::size_t>(INT32_MAX))
    throw common::InputError(key_where(source, kKeyTokens), "at most 2^31-1 tokens", std::to_string(n));
  auto same_length = [&](const char* key, std::size_t got) {
    if (got != n)
      throw common::InputError(key_where(source, key), std::to_string(n) + " entries, one per token of " + kKeyTokens,
                               std::to_string(got));
  };
  same_length(kKeyScores, vocab_.scores.size());
  same_length(kKeyTypes, vocab_.types.size());
  for (auto [key, id] : {std::pair{kKeyBos, vocab_.bos_id}, {kKeyEos, vocab_.eos_id}, {kKeyUnk, vocab_.unk_id}})
    if (id < 0 || static_cast<std::size_t>(id) >= n)
      throw common::InputError(key_where(source, key), "a token id below the vocabulary size " + std::to_string(n),
                               std::to_string(id));

  index_.reserve(n);
  texts_.resize(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::string& piece = vocab_.pieces[i];
    index_[piece] = i;  // a repeated piece maps to its last id, as in llama.cpp
    switch (vocab_.types[i]) {
      case TokenType::normal:
        texts_[i] = unescape_spaces(piece);
        break;
      case TokenType::user_defined:
        texts_[i] = piece;
        break;
      case TokenType::byte: {
        const int b = byte_of_piece(piece);
        if (b < 0) {
          common::Where w = key_where(source, kKeyTokens);
          w.item += " (token " + std::to_string(i) + ", type byte)";
          throw common::InputError(w, "a byte piece <0xNN>", io::quote_string(piece, 40));
        }
        texts_[i] = std::string(1, static_cast<char>(b));
        break;
      }
      default:  // control, unknown, unused, undefined: no text
        break;
    }
  }
  // Byte fallback: <0xNN>, else the byte as a one-character piece, else <unk>.
  for (int b = 0; b < 256; ++b) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    const std::string name = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    TokenId id = find(name);
    if (id < 0) id = find(std::string(1, static_cast<char>(b)));
    byte_ids_[static_cast<std::size_t>(b)] = id < 0 ? vocab_.unk_id : id;
  }
}

void Tokenizer::check_id(TokenId id) const {
  if (id < 0 || static_cast<std::size_t>(id) >= size()) {
    common::Where w;
    w.item = "token id " + std::to_string(id);
    throw common::InputError(w, "an id below the vocabulary size " + std::to_string(size()), std::to_string(id));
  }
}

std::string_view Tokenizer::piece(TokenId id) const {
  check_id(id);
  return vocab_.pieces[static_cast<std::size_t>(id)];
}

TokenType Tokenizer::type(TokenId id) const {
  check_id(id);
  return vocab_.types[static_cast<std::size_t>(id)];
}

float Tokenizer::score(TokenId id) const {
  check_id(id);
  return vocab_.scores[static_cast<std::size_t>(id)];
}

TokenId Tokenizer::find(std::string_view piece) const {
  auto it = index_.find(piece);
  return it == index_.end() ? -1 : static_cast<TokenId>(it->second);
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<TokenId> out;
  encode(text, add_bos, out);
  return out;
}

void Tokenizer::encode(std::string_view text, bool add_bos, std::vector<TokenId>& out) const {
  if (add_bos) out.push_back(vocab_.bos_id);
  if (text.empty()) return;

  std::string s;
  s.reserve(text.size() + kSpaceMarker.size() * 4);
  if (vocab_.add_space_prefix) s += kSpaceMarker;
  for (char c : text) {
    if (c == ' ') s += kSpaceMarker;
    else s += c;
  }
  if (s.size() > UINT32_MAX / 2)
    throw common::InputError::message(common::Where(), "the text to tokenize is too long (" +
                                                           std::to_string(text.size()) + " bytes)");

  std::vector<Symbol> symbols;
  symbols.reserve(s.size());
  for (std::size_t offset = 0; offset < s.size();) {
    const std::size_t len = std::min(s.size() - offset, utf8_length(s[offset]));
    const auto i = static_cast<std::int32_t>(symbols.size());
    symbols.push_back({i - 1, i + 1, static_cast<std::uint32_t>(offset), static_cast<std::uint32_t>(len)});
    offset += len;
  }
  symbols.back().next = -1;

  std::vector<Bigram> storage;
  storage.reserve(symbols.size());
  std::priority_queue<Bigram, std::vector<Bigram>, BigramOrder> queue(BigramOrder{}, std::move(storage));
  auto try_add = [&](std::int32_t left, std::int32_t right) {
    if (left < 0 || right < 0) return;
    const Symbol& l = symbols[static_cast<std::size_t>(left)];
    const Symbol& r = symbols[static_cast<std::size_t>(right)];
    const std::string_view joined(s.data() + l.offset, l.size + r.size);
    const TokenId id = find(joined);
    if (id < 0) return;
    queue.push({vocab_.scores[static_cast<std::size_t>(id)], left, right, l.size + r.size});
  };
  for (std::size_t i = 1; i < symbols.size(); ++i)
    try_add(static_cast<std::int32_t>(i - 1), static_cast<std::int32_t>(i));

  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = symbols[static_cast<std::size_t>(b.left)];
    Symbol& r = symbols[static_cast<std::size_t>(b.right)];
    if (l.size == 0 || r.size == 0 || l.size + r.size != b.size) continue;  // outdated
    l.size += r.size;
    r.size = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[static_cast<std::size_t>(r.next)].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }

  // Symbol 0 is never merged away (merges keep the left symbol), so the list starts there.
  for (std::int32_t i = 0; i >= 0; i = symbols[static_cast<std::size_t>(i)].next) {
    const Symbol& sym = symbols[static_cast<std::size_t>(i)];
    const std::string_view piece(s.data() + sym.offset, sym.size);
    const TokenId id = find(piece);
    if (id >= 0) {
      out.push_back(id);
    } else {
      for (char c : piece) out.push_back(byte_ids_[static_cast<std::uint8_t>(c)]);
    }
  }
}

std::string_view Tokenizer::text(TokenId id) const {
  check_id(id);
  return texts_[static_cast<std::size_t>(id)];
}

void Tokenizer::append_text(TokenId prev, TokenId id, bool strip_space_prefix, std::string& out) const {
  std::string_view t = text(id);
  if (strip_space_prefix && (prev < 0 || prev == vocab_.bos_id) && !t.empty() && t.front() == ' ')
    t.remove_prefix(1);
  out += t;
}

std::string Tokenizer::decode(std::span<const TokenId> ids, bool strip_space_prefix) const {
  std::string out;
  TokenId prev = -1;
  for (TokenId id : ids) {
    append_text(prev, id, strip_space_prefix, out);
    prev = id;
  }
  return out;
}

}  // namespace powerinfer2::model
