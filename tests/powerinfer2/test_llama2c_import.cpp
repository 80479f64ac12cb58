// llama2.c import: the real stories260K model against its checkpoint's bytes and llama2.c's
// own tokenizer, and hand-made checkpoints (sizes worked out by hand below) for every way a
// checkpoint can be wrong, through the library and the CLI.
#include <cstring>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_reader.hpp"
#include "io/llama2c.hpp"
#include "model/tokenizer.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
using powerinfer2::model::TokenId;
using powerinfer2::model::Tokenizer;
using Ids = std::vector<TokenId>;

namespace {

std::string cli() { return std::string("'") + POWERINFER2_CLI + "'"; }

template <class T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// A tiny checkpoint: dim 8, hidden 12, 2 layers, 2 heads, 1 kv head (head size 4, kv_dim 4),
// vocab 6, seq_len 4. Floats: embedding 6*8 = 48, rms_att 2*8 = 16, wq 2*8*8 = 128,
// wk 2*4*8 = 64, wv 64, wo 128, rms_ffn 16, w1/w2/w3 3 * 2*12*8 = 576, rms_final 8, RoPE
// tables 2 * 4*2 = 16: 1064 floats, 28 + 4256 = 4284 bytes; an unshared classifier adds
// 6*8 = 48 floats (4476 bytes). Float i holds i / 2 (exact), so every value names its index.
constexpr std::int32_t kTinyHeader[7] = {8, 12, 2, 2, 1, 6, 4};
constexpr std::size_t kTinyFloats = 1064;
constexpr std::size_t kTinyBytes = 4284;

std::string tiny_checkpoint(bool shared = true, std::array<std::int32_t, 7> header = {}) {
  if (header == std::array<std::int32_t, 7>{}) std::copy(std::begin(kTinyHeader), std::end(kTinyHeader), header.begin());
  if (!shared) header[5] = -header[5];
  std::string out;
  for (std::int32_t v : header) put(out, v);
  const std::size_t n = kTinyFloats + (shared ? 0 : 48);
  for (std::size_t i = 0; i < n; ++i) put(out, static_cast<float>(i) / 2);
  return out;
}

// llama2.c's tokenizer file for the tiny model (pieces as llama2.c stores them).
std::string tiny_tokenizer(std::size_t n_tokens = 6) {
  const std::vector<std::string> pieces{"<unk>", "\n<s>\n", "\n</s>\n", "<0x0A>", " a", "b"};
  std::string out;
  put(out, std::int32_t{6});
  for (std::size_t i = 0; i < n_tokens; ++i) {
    const std::string& p = pieces[i % pieces.size()];
    put(out, -static_cast<float>(i));
    put(out, static_cast<std::int32_t>(p.size()));
    out += p;
  }
  return out;
}

void write_bytes(const std::filesystem::path& path, const std::string& bytes) { testing::write_text(path, bytes); }

// The first float of a tensor.
float first_float(const io::GgufTensorView& t) {
  float v;
  std::memcpy(&v, t.data.data(), sizeof v);
  return v;
}

// Files in `dir` other than the inputs (a leftover temporary would show up here).
std::vector<std::string> outputs_in(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name != "model.bin" && name != "tok.bin") names.push_back(name);
  }
  return names;
}

}  // namespace

TEST_CASE("powerinfer2 llama2c: a tiny checkpoint becomes a llama GGUF", "[unit]") {
  testing::TempDir dir;
  for (const bool shared : {true, false}) {
    INFO("shared classifier: " << shared);
    write_bytes(dir / "model.bin", tiny_checkpoint(shared));
    write_bytes(dir / "tok.bin", tiny_tokenizer());
    const std::string out = (dir / "m.gguf").string();
    const io::Llama2cConfig c = io::import_llama2c((dir / "model.bin").string(), (dir / "tok.bin").string(), out);
    CHECK(c.vocab_size == 6);
    CHECK(c.shared_classifier == shared);
    CHECK(c.head_size() == 4);
    CHECK(c.kv_dim() == 4);

    const io::GgufFile f(out);
    CHECK(f.get_string("general.architecture") == "llama");
    CHECK(f.get_string("general.name") == "model");
    CHECK(f.get_u32("llama.embedding_length") == 8);
    CHECK(f.get_u32("llama.feed_forward_length") == 12);
    CHECK(f.get_u32("llama.block_count") == 2);
    CHECK(f.get_u32("llama.attention.head_count") == 2);
    CHECK(f.get_u32("llama.attention.head_count_kv") == 1);
    CHECK(f.get_u32("llama.context_length") == 4);
    CHECK(f.get_u32("llama.rope.dimension_count") == 4);
    CHECK(f.tensor_count() == 2 * 9 + 2 + (shared ? 0 : 1));
    // Each tensor is the checkpoint's floats from its offset (float index = value * 2).
    auto starts_at = [&](const char* name, std::vector<std::uint64_t> shape, float index) {
      INFO(name);
      const io::GgufTensorView t = f.tensor(name);
      CHECK(std::vector<std::uint64_t>(t.shape.begin(), t.shape.end()) == shape);
      CHECK(t.type == io::GgmlType::F32);
      CHECK(first_float(t) == index / 2);
    };
    starts_at("token_embd.weight", {8, 6}, 0);
    starts_at("blk.0.attn_norm.weight", {8}, 48);
    starts_at("blk.1.attn_norm.weight", {8}, 56);
    starts_at("blk.0.attn_q.weight", {8, 8}, 64);
    starts_at("blk.1.attn_q.weight", {8, 8}, 128);
    starts_at("blk.0.attn_k.weight", {8, 4}, 192);
    starts_at("blk.1.attn_k.weight", {8, 4}, 224);
    starts_at("blk.0.attn_v.weight", {8, 4}, 256);
    starts_at("blk.0.attn_output.weight", {8, 8}, 320);
    starts_at("blk.0.ffn_norm.weight", {8}, 448);
    starts_at("blk.0.ffn_gate.weight", {8, 12}, 464);
    starts_at("blk.0.ffn_down.weight", {12, 8}, 656);
    starts_at("blk.1.ffn_down.weight", {12, 8}, 752);
    starts_at("blk.0.ffn_up.weight", {8, 12}, 848);
    starts_at("output_norm.weight", {8}, 1040);
    if (shared) CHECK_FALSE(f.find_tensor("output.weight"));
    else starts_at("output.weight", {8, 6}, 1064);  // after the 16 RoPE floats at 1048

    // The vocabulary as SentencePiece stores it.
    const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
    CHECK(tokens == std::vector<std::string>{"<unk>", "<s>", "</s>", "<0x0A>", "\xe2\x96\x81" "a", "b"});
    CHECK(f.get_i32_array("tokenizer.ggml.token_type") == std::vector<std::int32_t>{2, 3, 3, 6, 1, 1});
    CHECK(f.get_f32_array("tokenizer.ggml.scores") == std::vector<float>{0, -1, -2, -3, -4, -5});
    const Tokenizer t = Tokenizer::from_gguf(f);
    CHECK(t.encode("ab\n", true) == Ids{1, 4, 5, 3});
    CHECK(t.decode(Ids{1, 4, 5, 3}, true) == "ab\n");
    std::filesystem::remove(out);
  }
}

TEST_CASE("powerinfer2 llama2c: bad checkpoints give exact messages and exit code 3", "[unit]") {
  testing::TempDir dir;
  const std::string model = (dir / "model.bin").string(), tok = (dir / "tok.bin").string();
  const std::string out = (dir / "out.gguf").string();
  write_bytes(dir / "tok.bin", tiny_tokenizer());
  const std::string good = tiny_checkpoint();
  REQUIRE(good.size() == kTinyBytes);
  const std::string implied =
      "(the size the header implies: dim 8, hidden_dim 12, n_layers 2, n_heads 2, n_kv_heads 1, vocab_size 6, "
      "seq_len 4)";
  auto header_with = [](int field, std::int32_t value) {
    std::array<std::int32_t, 7> h;
    std::copy(std::begin(kTinyHeader), std::end(kTinyHeader), h.begin());
    h[static_cast<std::size_t>(field)] = value;
    return h;
  };
  std::string ak42;
  put(ak42, std::uint32_t{0x616b3432});
  put(ak42, std::int32_t{1});
  ak42 += good.substr(8);

  struct Bad {
    const char* what;
    std::string bytes;
    std::string error;  // after "error: <model>: "
    std::string hint;
  };
  const std::vector<Bad> cases{
      {"truncated by 4 bytes", good.substr(0, good.size() - 4),
       "expected 4284 bytes " + implied + ", got 4280 bytes", "the file is truncated"},
      {"8 bytes too many", good + std::string(8, '\0'), "expected 4284 bytes " + implied + ", got 4292 bytes",
       "the file has bytes past the last array"},
      {"a classifier with a positive vocab_size", good + std::string(48 * 4, '\0'),
       "expected 4284 bytes " + implied + ", got 4476 bytes",
       "the extra bytes are one [vocab_size, dim] classifier: a separate classifier is marked by a negative "
       "vocab_size"},
      {"shorter than the header", good.substr(0, 10),
       "expected a llama2.c checkpoint starting with a 28-byte header (7 int32), got a file of 10 bytes",
       "the file is truncated"},
      {"empty", "", "expected a llama2.c checkpoint starting with a 28-byte header (7 int32), got a file of 0 bytes",
       ""},
      {"negative hidden_dim", tiny_checkpoint(true, header_with(1, -1)),
       "byte 4: header field hidden_dim: expected a positive integer, got -1", ""},
      {"zero seq_len", tiny_checkpoint(true, header_with(6, 0)),
       "byte 24: header field seq_len: expected a positive integer, got 0", ""},
      {"zero vocab_size", tiny_checkpoint(true, header_with(5, 0)),
       "byte 20: header field vocab_size: expected a non-zero integer (negative: unshared classifier), got 0", ""},
      {"n_heads not dividing dim", tiny_checkpoint(true, header_with(3, 3)),
       "header: expected n_heads to divide dim, got n_heads 3 and dim 8", ""},
      {"n_kv_heads above n_heads", tiny_checkpoint(true, header_with(4, 4)),
       "header: expected n_kv_heads to divide n_heads, got n_kv_heads 4 and n_heads 2", ""},
      {"odd head size", tiny_checkpoint(true, header_with(3, 8)),
       "header: expected an even head size dim / n_heads (RoPE rotates pairs), got 1", ""},
      {"llama2.c export version 1", ak42,
       "byte 0: header: expected the legacy llama2.c format (version 0: 7 int32, then float32 weights), got the "
       "magic \"ak42\" of llama2.c's export version 1",
       "export it again with llama2.c's export.py --version 0"},
  };
  for (const Bad& b : cases) {
    INFO(b.what);
    write_bytes(dir / "model.bin", b.bytes);
    try {
      io::import_llama2c(model, tok, out);
      FAIL("no error");
    } catch (const common::InputError& e) {
      CHECK(std::string(e.what()) == model + ": " + b.error);
      CHECK(e.hint() == b.hint);
    }
    // Through the CLI, with an older output in place: it must survive, and no temporary
    // may be left beside it.
    testing::write_text(out, "old");
    const testing::CommandResult r =
        testing::run_command(cli() + " import --llama2c " + model + " --tokenizer " + tok + " -o " + out);
    CHECK(r.exit_code == 3);
    CHECK(r.out.empty());
    CHECK(r.err == "error: " + model + ": " + b.error + "\n" + (b.hint.empty() ? "" : "hint: " + b.hint + "\n"));
    CHECK(common::read_file(out) == "old");
    CHECK(outputs_in(dir.path()) == std::vector<std::string>{"out.gguf"});
    std::filesystem::remove(out);
    // Without an older output, nothing appears.
    CHECK(testing::run_command(cli() + " import --llama2c " + model + " --tokenizer " + tok + " -o " + out)
              .exit_code == 3);
    CHECK(outputs_in(dir.path()).empty());
  }
}

TEST_CASE("powerinfer2 llama2c: bad tokenizer files, missing files and usage", "[unit]") {
  testing::TempDir dir;
  const std::string model = (dir / "model.bin").string(), tok = (dir / "tok.bin").string();
  const std::string out = (dir / "out.gguf").string();
  write_bytes(dir / "model.bin", tiny_checkpoint());
  const std::string import = cli() + " import --llama2c " + model + " --tokenizer " + tok + " -o " + out;

  struct Bad {
    const char* what;
    std::string bytes;
    std::string error;  // after "error: <tok>: "
    std::string hint;
  };
  std::string negative_length = tiny_tokenizer(1);
  put(negative_length, 0.0f);
  put(negative_length, std::int32_t{-2});
  const std::string full = tiny_tokenizer();
  const std::vector<Bad> cases{
      {"5 tokens for a vocabulary of 6", tiny_tokenizer(5),
       "expected 6 tokens (the vocab_size of " + model + "), got 5 tokens",
       "is this the tokenizer the model was trained with?"},
      {"7 tokens for a vocabulary of 6", tiny_tokenizer(7),
       "expected 6 tokens (the vocab_size of " + model + "), got 7 tokens",
       "is this the tokenizer the model was trained with?"},
      {"cut inside the last piece", full.substr(0, full.size() - 1),
       "byte 76: token 5: expected 1 bytes of text, got 0 bytes before the end of the file", "the file is truncated"},
      {"cut inside a token's header", full.substr(0, 10),
       "byte 4: token 0: expected a float32 score and an int32 length, got 6 bytes before the end of the file",
       "the file is truncated"},
      {"negative length", negative_length, "byte 21: token 1 length: expected a length of 0 or more, got -2", ""},
      {"no max_token_length", "ab", "byte 0: header: expected a llama2.c tokenizer file starting with int32 "
                                    "max_token_length, got a file of 2 bytes", ""},
  };
  for (const Bad& b : cases) {
    INFO(b.what);
    write_bytes(dir / "tok.bin", b.bytes);
    const testing::CommandResult r = testing::run_command(import);
    CHECK(r.exit_code == 3);
    CHECK(r.err == "error: " + tok + ": " + b.error + "\n" + (b.hint.empty() ? "" : "hint: " + b.hint + "\n"));
    CHECK(outputs_in(dir.path()).empty());
  }

  write_bytes(dir / "tok.bin", tiny_tokenizer());
  testing::CommandResult r = testing::run_command(import);
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(r.err == "wrote " + out + ": llama, 2 layers, dim 8, ffn 12, 2 heads (1 kv), vocab 6, context 4, "
                                  "classifier shared with the embedding\n");
  CHECK(outputs_in(dir.path()) == std::vector<std::string>{"out.gguf"});

  const std::string missing = (dir / "absent.bin").string();
  r = testing::run_command(cli() + " import --llama2c " + missing + " --tokenizer " + tok + " -o " + out);
  CHECK(r.exit_code == 4);
  CHECK(r.err == "error: " + missing + ": cannot open for reading: No such file or directory\n");
  r = testing::run_command(cli() + " import --llama2c " + model + " --tokenizer " + missing + " -o " + out);
  CHECK(r.exit_code == 4);
  r = testing::run_command(cli() + " import --llama2c " + model + " --tokenizer " + tok);
  CHECK(r.exit_code == 2);
  r = testing::run_command(cli() + " import --tokenizer " + tok + " -o " + out);
  CHECK(r.exit_code == 2);
}

TEST_CASE("powerinfer2 llama2c golden: stories260K imports as llama2.c defines it", "[golden]") {
  const std::filesystem::path shared = testing::shared_dir();
  const std::filesystem::path bin = shared / "models" / "stories260K.bin", tok = shared / "models" / "tok512.bin";
  if (shared.empty() || !std::filesystem::exists(bin) || !std::filesystem::exists(tok))
    PWPI_SKIP("needs ../shared/models/stories260K.bin and tok512.bin");
  testing::TempDir dir;
  const std::string out = (dir / "stories260K.gguf").string();
  const testing::CommandResult r =
      testing::run_command(cli() + " import --llama2c '" + bin.string() + "' --tokenizer '" + tok.string() + "' -o " + out);
  REQUIRE(r.exit_code == 0);

  const io::GgufFile f(out);
  CHECK(f.version() == 3);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_string("general.name") == "stories260K");
  CHECK(f.get_u32("llama.embedding_length") == 64);
  CHECK(f.get_u32("llama.feed_forward_length") == 172);
  CHECK(f.get_u32("llama.block_count") == 5);
  CHECK(f.get_u32("llama.attention.head_count") == 8);
  CHECK(f.get_u32("llama.attention.head_count_kv") == 4);
  CHECK(f.get_u32("llama.context_length") == 512);
  CHECK(f.get_u32("llama.rope.dimension_count") == 8);
  CHECK(f.get_f32("llama.rope.freq_base") == 10000.0f);
  CHECK(f.get_f32("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(f.get_string_array("tokenizer.ggml.tokens").size() == 512);

  // 1 + 5 * 9 + 1 tensors; no output.weight, the classifier is the embedding.
  CHECK(f.tensor_count() == 47);
  CHECK_FALSE(f.find_tensor("output.weight"));
  auto shape_of = [&](const std::string& name) {
    const io::GgufTensorView t = f.tensor(std::string_view(name));
    CHECK(t.type == io::GgmlType::F32);
    return std::vector<std::uint64_t>(t.shape.begin(), t.shape.end());
  };
  using Shape = std::vector<std::uint64_t>;
  CHECK(shape_of("token_embd.weight") == Shape{64, 512});
  CHECK(shape_of("output_norm.weight") == Shape{64});
  for (int l = 0; l < 5; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    INFO(p);
    CHECK(shape_of(p + "attn_norm.weight") == Shape{64});
    CHECK(shape_of(p + "attn_q.weight") == Shape{64, 64});
    CHECK(shape_of(p + "attn_k.weight") == Shape{64, 32});
    CHECK(shape_of(p + "attn_v.weight") == Shape{64, 32});
    CHECK(shape_of(p + "attn_output.weight") == Shape{64, 64});
    CHECK(shape_of(p + "ffn_norm.weight") == Shape{64});
    CHECK(shape_of(p + "ffn_gate.weight") == Shape{64, 172});
    CHECK(shape_of(p + "ffn_down.weight") == Shape{172, 64});
    CHECK(shape_of(p + "ffn_up.weight") == Shape{64, 172});
  }

  // Tensor bytes are the checkpoint's bytes. Offsets in floats after the 28-byte header:
  // embedding 512*64 = 32768, rms_att 5*64 = 320, wq 5*64*64 = 20480 per array, wk/wv
  // 5*32*64 = 10240, wo 20480, rms_ffn 320, w1/w2/w3 5*172*64 = 55040 each.
  const std::string ckpt = common::read_file(bin.string());
  REQUIRE(ckpt.size() == 1056540);
  auto same_bytes = [&](const char* name, std::size_t float_offset) {
    INFO(name);
    const io::GgufTensorView t = f.tensor(name);
    CHECK(std::memcmp(t.data.data(), ckpt.data() + 28 + 4 * float_offset, t.size_bytes) == 0);
  };
  same_bytes("token_embd.weight", 0);
  same_bytes("blk.0.attn_norm.weight", 32768);
  same_bytes("blk.0.attn_q.weight", 32768 + 320);
  same_bytes("blk.3.attn_q.weight", 32768 + 320 + 3 * 4096);
  same_bytes("blk.4.attn_k.weight", 32768 + 320 + 20480 + 4 * 2048);
  same_bytes("blk.2.attn_v.weight", 32768 + 320 + 20480 + 10240 + 2 * 2048);
  same_bytes("blk.1.attn_output.weight", 32768 + 320 + 20480 + 2 * 10240 + 4096);
  same_bytes("blk.4.ffn_down.weight", 32768 + 2 * 320 + 2 * 20480 + 2 * 10240 + 55040 + 4 * 11008);
  same_bytes("output_norm.weight", 32768 + 2 * 320 + 2 * 20480 + 2 * 10240 + 3 * 55040);
  // The last 64 floats before the 2 * 512 * 4 RoPE floats are the final norm.
  CHECK(ckpt.size() == 28 + 4 * (32768 + 2 * 320 + 2 * 20480 + 2 * 10240 + 3 * 55040 + 64 + 2 * 512 * 4));

  // The vocabulary tokenizes as llama2.c's encode() does on tok512.bin (ids from a
  // transcription of run.c's encode, check_llama2c_import.py; e.g. " Once" is id 403 there).
  const Tokenizer t = Tokenizer::from_gguf(f);
  CHECK(t.piece(1) == "<s>");
  CHECK(t.piece(2) == "</s>");
  CHECK(t.piece(403) == "\xe2\x96\x81" "Once");
  CHECK(t.encode("Once upon a time", true) == Ids{1, 403, 407, 261, 378});
  CHECK(t.encode("Lily's mom said, \"hi\"\n", false) == Ids{317, 439, 419, 357, 336, 432, 313, 415, 417, 436, 13});
  CHECK(t.encode("caf\xc3\xa9", false) == Ids{280, 412, 431, 485});
  CHECK(t.encode(" ", false) == Ids{410, 410});  // no "▁▁" piece in this vocabulary
  CHECK(t.decode(Ids{1, 403, 407, 261, 378}, true) == "Once upon a time");
}
