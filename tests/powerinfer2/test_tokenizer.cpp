// The SentencePiece tokenizer: merges by score on a small hand-made vocabulary (expected ids
// worked out by hand in the comments), byte fallback, edge cases, bad vocabularies, and
// llama.cpp's 46 reference cases on the Llama-2 vocabulary.
#include <chrono>
#include <sstream>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_reader.hpp"
#include "model/tokenizer.hpp"
#include "test_support.hpp"
#include "tokenizer_fixtures.hpp"

using powerinfer2::io::GgufFile;
using powerinfer2::model::TokenId;
using powerinfer2::model::Tokenizer;
using powerinfer2::model::TokenType;
using Ids = std::vector<TokenId>;
using namespace tokfix;

namespace {

Tokenizer load(const std::string& path) { return Tokenizer::from_gguf(GgufFile(path)); }

std::string ids_text(const Ids& ids) {
  std::ostringstream s;
  for (TokenId id : ids) s << ' ' << id;
  return s.str();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const common::InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

}  // namespace

TEST_CASE("powerinfer2 tokenizer: merges the highest-scoring pair first, leftmost on ties", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab()));
  REQUIRE(t.size() == static_cast<std::size_t>(kVocabSize));
  CHECK(t.bos_id() == 1);
  CHECK(t.eos_id() == 2);
  CHECK(t.unk_id() == 0);
  CHECK(t.type(3) == TokenType::byte);
  CHECK(t.find("\xe2\x96\x81" "a") == kSpaceA);
  CHECK(t.find("zz") == -1);

  // "▁ a b c": candidates ▁a (-3), ab (-5), bc (-2): bc, then ▁a; "abc" and "▁abc" are
  // not pieces.
  CHECK(t.encode("abc", false) == Ids{kSpaceA, kBC});
  // "▁ a b": ▁a (-3) beats ab (-5), then ▁a+b is no piece.
  CHECK(t.encode("ab", false) == Ids{kSpaceA, kB});
  // "▁ a a a": aa (-2) twice at positions 1 and 2 beats ▁a (-3); the leftmost aa is
  // merged, which leaves ▁, aa, a (taking the right one would give ▁a, aa).
  CHECK(t.encode("aaa", false) == Ids{kSpace, kAA, kA});
  // "▁ b c": ▁b (-4) loses to bc (-2), leaving ▁ + bc (taking the first mergeable pair
  // instead of the best would give ▁b, c).
  CHECK(t.encode("bc", false) == Ids{kSpace, kBC});
  // Spaces inside the text are "▁" too: "▁a ▁ b" -> ▁a (-3) and ▁b (-4).
  CHECK(t.encode("a b", false) == Ids{kSpaceA, kSpaceB});
  CHECK(t.encode("abc", true) == Ids{1, kSpaceA, kBC});
}

TEST_CASE("powerinfer2 tokenizer: byte fallback, UTF-8 and invalid bytes", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab()));
  // 'z' is no piece: its byte token.
  CHECK(t.encode("z", false) == Ids{kSpace, byte_id('z')});
  // A two-byte character that is a piece, and one that is not (one byte token per byte).
  CHECK(t.encode("\xc3\xa9", false) == Ids{kSpace, kEAcute});
  CHECK(t.encode("\xc3\xbc", false) == Ids{kSpace, byte_id(0xc3), byte_id(0xbc)});
  // A four-byte emoji.
  CHECK(t.encode("\xf0\x9f\x98\x80", false) ==
        Ids{kSpace, byte_id(0xf0), byte_id(0x9f), byte_id(0x98), byte_id(0x80)});
  // Invalid UTF-8: a lone continuation byte is a character of its own; a lead byte whose
  // character is cut by the end of the text takes what is left; 0xff alone.
  CHECK(t.encode("a\x80" "b", false) == Ids{kSpaceA, byte_id(0x80), kB});
  CHECK(t.encode("\xe2\x82", false) == Ids{kSpace, byte_id(0xe2), byte_id(0x82)});
  CHECK(t.encode("\xff", false) == Ids{kSpace, byte_id(0xff)});
  // A newline is bytes only in this vocabulary (as in Llama-2's).
  CHECK(t.encode("\n", false) == Ids{kSpace, byte_id('\n')});

  // Decoding assembles byte tokens back into the same bytes.
  for (const std::string s : {"z", "\xc3\xa9", "\xc3\xbc", "\xf0\x9f\x98\x80", "a\x80" "b", "\xe2\x82", "\xff",
                              "\n", "ab c\xc3\xa9 \xe2\x82"}) {
    INFO("text \"" << s << "\"");
    CHECK(t.decode(t.encode(s, false), true) == s);
    CHECK(t.decode(t.encode(s, true), true) == s);
  }
}

TEST_CASE("powerinfer2 tokenizer: empty and whitespace-only input", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab()));
  CHECK(t.encode("", false).empty());
  CHECK(t.encode("", true) == Ids{1});
  // " " -> "▁▁" (the added prefix and the space).
  CHECK(t.encode(" ", false) == Ids{kSpace2});
  // "▁▁▁": two equal candidates, the left one merges.
  CHECK(t.encode("  ", false) == Ids{kSpace2, kSpace});
  CHECK(t.encode("\t", false) == Ids{kSpace, byte_id('\t')});
  for (const std::string s : {"", " ", "  ", "   ", "\t", " \n ", "\n\n"}) {
    INFO("text \"" << s << "\"");
    CHECK(t.decode(t.encode(s, false), true) == s);
  }
}

TEST_CASE("powerinfer2 tokenizer: decoding pieces, control tokens and the space prefix", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab()));
  CHECK(t.text(kSpaceA) == " a");
  CHECK(t.text(1).empty());  // control
  CHECK(t.text(0).empty());  // unknown
  CHECK(t.text(byte_id('\n')) == "\n");
  const Ids ids{1, kSpaceA, kBC, 2};
  CHECK(t.decode(ids, true) == "abc");
  CHECK(t.decode(ids, false) == " abc");
  // The space is dropped only at the start or right after BOS (llama2.c's rule).
  CHECK(t.decode(Ids{kSpaceA, kSpaceA}, true) == "a a");
  CHECK(t.decode(Ids{kSpaceA, 1, kSpaceA}, true) == "aa");
  // Streaming, one token at a time, gives the same text.
  std::string streamed;
  TokenId prev = -1;
  for (TokenId id : ids) {
    t.append_text(prev, id, true, streamed);
    prev = id;
  }
  CHECK(streamed == "abc");
  CHECK(error_of([&] { t.decode(Ids{kVocabSize}, true); }) ==
        "token id 270: expected an id below the vocabulary size 270, got 270");
  CHECK(error_of([&] { (void)t.piece(-1); }) == "token id -1: expected an id below the vocabulary size 270, got -1");
}

TEST_CASE("powerinfer2 tokenizer: add_space_prefix false and missing byte tokens", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab(),
                                       [](io::GgufWriter& w) { w.set("tokenizer.ggml.add_space_prefix", false); }));
  CHECK(t.encode("abc", false) == Ids{kA, kBC});
  CHECK(t.decode(t.encode("abc", false), true) == "abc");

  // Without byte tokens an unknown character falls back to <unk>.
  VocabSpec v = small_vocab();
  for (int b = 0; b < 256; ++b) v.tokens[3 + b] = "unused" + std::to_string(b), v.types[3 + b] = 5;
  const Tokenizer u = load(write_vocab(dir / "u.gguf", v));
  CHECK(u.encode("z", false) == Ids{kSpace, 0});
}

TEST_CASE("powerinfer2 tokenizer: long inputs stay fast (no quadratic merging)", "[unit]") {
  testing::TempDir dir;
  const Tokenizer t = load(write_vocab(dir / "v.gguf", small_vocab()));
  const std::string text(200000, 'a');
  const auto start = std::chrono::steady_clock::now();
  const Ids ids = t.encode(text, false);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  // "▁" + 200000 'a': the aa merges go left to right, so ▁ then 100000 x aa.
  REQUIRE(ids.size() == 100001);
  CHECK(ids.front() == kSpace);
  CHECK(ids.back() == kAA);
  CHECK(seconds < 10.0);  // quadratic work would take minutes
  CHECK(t.decode(ids, true) == text);
}

TEST_CASE("powerinfer2 tokenizer: malformed vocabularies name the file and key", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "bad.gguf").string();
  auto fails_with = [&](const std::function<void(io::GgufWriter&)>& edit, VocabSpec v = small_vocab()) {
    write_vocab(path, v, edit);
    return error_of([&] { load(path); });
  };
  CHECK(fails_with([](io::GgufWriter& w) { w.erase("tokenizer.ggml.scores"); }) ==
        path + ": metadata key tokenizer.ggml.scores: missing (the file has no such key)");
  CHECK(fails_with([](io::GgufWriter& w) { w.erase("tokenizer.ggml.model"); }) ==
        path + ": metadata key tokenizer.ggml.model: missing (the file has no such key)");
  CHECK(fails_with([](io::GgufWriter& w) { w.erase("tokenizer.ggml.token_type"); }) ==
        path + ": metadata key tokenizer.ggml.token_type: missing (the file has no such key)");
  CHECK(fails_with([](io::GgufWriter& w) { w.set_array("tokenizer.ggml.scores", std::vector<float>{0, 1}); }) ==
        path + ": metadata key tokenizer.ggml.scores: expected 270 entries, one per token of tokenizer.ggml.tokens, "
               "got 2");
  CHECK(fails_with([](io::GgufWriter& w) {
          w.set_array("tokenizer.ggml.token_type", std::vector<std::int32_t>(271, 1));
        }) == path + ": metadata key tokenizer.ggml.token_type: expected 270 entries, one per token of "
                     "tokenizer.ggml.tokens, got 271");
  CHECK(fails_with([](io::GgufWriter& w) { w.set("tokenizer.ggml.model", "gpt2"); }) ==
        path + ": metadata key tokenizer.ggml.model: GPT-2-style byte-level BPE (\"gpt2\") is not supported yet; "
               "supported: \"llama\" (SentencePiece)");
  CHECK(fails_with([](io::GgufWriter& w) { w.set("tokenizer.ggml.model", "bert"); }) ==
        path + ": metadata key tokenizer.ggml.model: the tokenizer model \"bert\" is not supported; supported: "
               "\"llama\" (SentencePiece)");
  CHECK(fails_with([](io::GgufWriter& w) { w.set("tokenizer.ggml.bos_token_id", std::uint32_t{270}); }) ==
        path + ": metadata key tokenizer.ggml.bos_token_id: expected a token id below the vocabulary size 270, "
               "got 270");
  CHECK(fails_with([](io::GgufWriter& w) { w.set("tokenizer.ggml.tokens", std::uint32_t{3}); }) ==
        path + ": metadata key tokenizer.ggml.tokens: expected an array, got uint32 3");
  CHECK(fails_with([](io::GgufWriter& w) {
          w.set_array("tokenizer.ggml.token_type", std::vector<std::int32_t>(270, 9));
        }) == path + ": metadata key tokenizer.ggml.token_type: expected token types 0 to 6, got 9 at index 0");
  VocabSpec v = small_vocab();
  v.types[kA] = 6;  // "a" marked as a byte token
  CHECK(fails_with({}, v) == path + ": metadata key tokenizer.ggml.tokens (token 260, type byte): expected a byte "
                                    "piece <0xNN>, got \"a\"");
  CHECK(fails_with({}, VocabSpec{}) == path + ": metadata key tokenizer.ggml.tokens: expected at least one token, "
                                              "got an empty array");
}

namespace {

struct Case {
  std::string text;
  Ids expected;
};

// The .inp file holds each case followed by "\n__ggml_vocab_test__\n"; the .out file one
// line of ids per case.
std::vector<Case> read_cases(const std::filesystem::path& vocab) {
  const std::string inp = common::read_file(vocab.string() + ".inp");
  const std::string out = common::read_file(vocab.string() + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Case> cases;
  for (std::size_t pos = 0; pos < inp.size();) {
    const std::size_t end = inp.find(sep, pos);
    REQUIRE(end != std::string::npos);
    cases.push_back({inp.substr(pos, end - pos), {}});
    pos = end + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  for (Case& c : cases) {
    REQUIRE(std::getline(lines, line));
    std::istringstream ids(line);
    for (TokenId id; ids >> id;) c.expected.push_back(id);
  }
  return cases;
}

}  // namespace

TEST_CASE("powerinfer2 tokenizer golden: llama.cpp's 46 cases on the Llama-2 vocabulary", "[golden]") {
  const std::filesystem::path shared = testing::shared_dir();
  const std::filesystem::path vocab = shared / "tokenizer" / "ggml-vocab-llama-spm.gguf";
  if (shared.empty() || !std::filesystem::exists(vocab)) PWPI_SKIP("needs ../shared/tokenizer/ggml-vocab-llama-spm.gguf");
  const Tokenizer t = load(vocab.string());
  REQUIRE(t.size() == 32000);
  const std::vector<Case> cases = read_cases(vocab);
  REQUIRE(cases.size() == 46);
  std::size_t matched = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Ids got = t.encode(cases[i].text, false);
    INFO("case " << i << " text \"" << cases[i].text << "\"\n  expected" << ids_text(cases[i].expected)
                 << "\n  got     " << ids_text(got));
    CHECK(got == cases[i].expected);
    CHECK(t.decode(got, true) == cases[i].text);
    // With BOS: the same ids after id 1, and the same text back.
    const Ids with_bos = t.encode(cases[i].text, true);
    CHECK(with_bos.size() == got.size() + 1);
    CHECK(t.decode(with_bos, true) == cases[i].text);
    matched += got == cases[i].expected;
  }
  CHECK(matched == cases.size());
  // A few pieces as llama.cpp prints them.
  CHECK(t.decode(Ids{1, 15043, 3186}, true) == "Hello world");
  CHECK(t.decode(Ids{1, 15043, 3186}, false) == " Hello world");
}
