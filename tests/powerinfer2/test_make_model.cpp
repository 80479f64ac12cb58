// tools/make-model: the tiny preset in every type and activation read back by the project's
// reader and engine (shapes, types, llama.cpp's metadata, the byte-level vocabulary, finite
// logits), determinism by seed, --vocab, bad input; gguf-py's reader and an independent
// Python transcription of the weight scheme (golden); the 22-layer 1b preset (slow).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/thread_pool.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "json_text.hpp"
#include "model/forward.hpp"
#include "model/model.hpp"
#include "model/tokenizer.hpp"
#include "model_maker.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"
#include "test_support.hpp"
#include "tokenizer_fixtures.hpp"

namespace io = powerinfer2::io;
namespace mm = powerinfer2::tools;
namespace mdl = powerinfer2::model;
using io::GgmlType;

namespace {

testing::CommandResult make_model(const std::string& args) { return testing::run_cli(MAKE_MODEL, args); }
testing::CommandResult cli(const std::string& args) { return testing::run_cli(POWERINFER2_CLI, args); }
std::string q(const std::filesystem::path& p) { return testing::shell_quote(p.string()); }

std::string read_bytes(const std::filesystem::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// Writes a tiny model and requires success.
std::filesystem::path write_tiny(const testing::TempDir& dir, const std::string& name, const std::string& args) {
  const std::filesystem::path out = dir / name;
  const testing::CommandResult r = make_model("--preset tiny -q " + args + " -o " + q(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(std::filesystem::exists(out));
  return out;
}

// The tiny preset, as docs/powerinfer2.md specifies it: an outside statement of the shapes.
constexpr std::uint64_t kDim = 64, kFfn = 192, kLayers = 3, kHeads = 4, kKvHeads = 2, kVocab = 512, kCtx = 256;

std::vector<std::uint64_t> expected_shape(const std::string& name) {
  const std::uint64_t kv = kDim / kHeads * kKvHeads;
  auto ends = [&](const char* suffix) { return name.ends_with(suffix); };
  if (name == "token_embd.weight" || name == "output.weight") return {kDim, kVocab};
  if (ends("norm.weight")) return {kDim};
  if (ends("attn_q.weight") || ends("attn_output.weight")) return {kDim, kDim};
  if (ends("attn_k.weight") || ends("attn_v.weight")) return {kDim, kv};
  if (ends("ffn_gate.weight") || ends("ffn_up.weight")) return {kDim, kFfn};
  if (ends("ffn_down.weight")) return {kFfn, kDim};
  FAIL("unexpected tensor " << name);
  return {};
}

// Decodes a few tokens and checks that every logit is finite and that they are not all equal.
void require_finite_logits(const std::filesystem::path& path, std::size_t n_ctx = 32) {
  const mdl::Model model(path.string());
  common::ThreadPool pool(2);
  mdl::Forward forward(model, pool, n_ctx);
  for (std::size_t pos = 0; pos < 4; ++pos) {
    const std::span<const float> logits = forward.decode(static_cast<powerinfer2::model::TokenId>(1 + 37 * pos), pos);
    REQUIRE(logits.size() == model.config.vocab);
    float lo = logits[0], hi = logits[0];
    for (float x : logits) {
      REQUIRE(std::isfinite(x));
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    INFO("logit range " << lo << " .. " << hi);
    CHECK(hi - lo > 0.1f);
    CHECK(hi - lo < 1000.0f);
  }
}

// The bytes the scheme gives for row `row` of a matrix in `type`.
std::vector<std::uint8_t> expected_row_bytes(GgmlType type, std::uint64_t seed, const std::string& name,
                                             std::uint64_t row, std::size_t n) {
  std::vector<float> x(n);
  mm::generate_row(seed, name, row, mm::weight_std(n), x);
  std::vector<std::uint8_t> out(*io::ggml_row_bytes(type, n));
  switch (type) {
    case GgmlType::F32: std::memcpy(out.data(), x.data(), out.size()); break;
    case GgmlType::F16: powerinfer2::ops::fp32_to_fp16_row(x.data(), reinterpret_cast<powerinfer2::ops::fp16_t*>(out.data()), n); break;
    case GgmlType::Q8_0: powerinfer2::ops::quantize_row_q8_0(x.data(), reinterpret_cast<powerinfer2::ops::BlockQ8_0*>(out.data()), n); break;
    case GgmlType::Q4_0: powerinfer2::ops::quantize_row_q4_0(x.data(), reinterpret_cast<powerinfer2::ops::BlockQ4_0*>(out.data()), n); break;
    default: FAIL("type");
  }
  return out;
}

}  // namespace

TEST_CASE("powerinfer2 make-model: the tiny preset in each type has the preset's shapes, llama.cpp's metadata and the scheme's weights", "[unit]") {
  struct Case { const char* arg; GgmlType type; std::uint32_t file_type; };
  const Case c = GENERATE(Case{"f32", GgmlType::F32, 0}, Case{"f16", GgmlType::F16, 1}, Case{"q8_0", GgmlType::Q8_0, 7},
                          Case{"q4_0", GgmlType::Q4_0, 2});
  CAPTURE(c.arg);
  testing::TempDir dir;
  const auto path = write_tiny(dir, "tiny.gguf", std::string("--type ") + c.arg + " --seed 3");
  const io::GgufFile f(path.string());

  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(!f.get_string("general.name").empty());
  CHECK(f.get_u32("llama.context_length") == kCtx);
  CHECK(f.get_u32("llama.embedding_length") == kDim);
  CHECK(f.get_u32("llama.block_count") == kLayers);
  CHECK(f.get_u32("llama.feed_forward_length") == kFfn);
  CHECK(f.get_u32("llama.attention.head_count") == kHeads);
  CHECK(f.get_u32("llama.attention.head_count_kv") == kKvHeads);
  CHECK(f.get_u32("llama.rope.dimension_count") == kDim / kHeads);
  CHECK(f.get_f32("llama.rope.freq_base") == 10000.0f);
  CHECK(f.get_f32("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
  CHECK(f.get_u32("general.file_type") == c.file_type);
  CHECK(f.get_u32("llama.vocab_size") == kVocab);
  CHECK(f.get_string("powerinfer2.ffn_activation") == "swiglu");

  // The byte-level vocabulary: <unk> <s> </s>, 256 byte tokens, unused tokens to the size.
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  const auto& tokens = f.get_string_array("tokenizer.ggml.tokens");
  const auto types = f.get_i32_array("tokenizer.ggml.token_type");
  const auto scores = f.get_f32_array("tokenizer.ggml.scores");
  REQUIRE(tokens.size() == kVocab);
  REQUIRE(types.size() == kVocab);
  REQUIRE(scores.size() == kVocab);
  CHECK(tokens[0] == "<unk>");
  CHECK(tokens[1] == "<s>");
  CHECK(tokens[2] == "</s>");
  CHECK(tokens[3] == "<0x00>");
  CHECK(tokens[3 + 0x0A] == "<0x0A>");
  CHECK(tokens[258] == "<0xFF>");
  CHECK(tokens[259] == "\xe2\x96\x81");  // "▁", a space
  CHECK(tokens[260] == "<unused0>");
  CHECK(tokens[511] == "<unused251>");
  CHECK(types[0] == 2);
  CHECK(types[1] == 3);
  CHECK(types[2] == 3);
  for (std::size_t i = 3; i < 259; ++i) REQUIRE(types[i] == 6);
  CHECK(types[259] == 1);
  for (std::size_t i = 260; i < kVocab; ++i) REQUIRE(types[i] == 5);
  CHECK(std::set<std::string>(tokens.begin(), tokens.end()).size() == kVocab);
  CHECK(f.get_u32("tokenizer.ggml.bos_token_id") == 1);
  CHECK(f.get_u32("tokenizer.ggml.eos_token_id") == 2);
  CHECK(f.get_u32("tokenizer.ggml.unknown_token_id") == 0);
  CHECK(f.get_bool("tokenizer.ggml.add_bos_token"));

  // Tensors: shapes from the preset, norms F32, matrices in the type asked for.
  REQUIRE(f.tensor_count() == 3 + 9 * kLayers);
  for (const io::GgufTensorInfo& t : f.tensor_infos()) {
    CAPTURE(t.name);
    const std::vector<std::uint64_t> want = expected_shape(t.name);
    CHECK(std::vector<std::uint64_t>(t.shape().begin(), t.shape().end()) == want);
    CHECK(t.type == (want.size() == 1 ? GgmlType::F32 : c.type));
  }
  for (const char* norm : {"blk.1.attn_norm.weight", "output_norm.weight"}) {
    const io::GgufTensorView v = f.tensor(norm);
    std::vector<float> x(kDim);
    std::memcpy(x.data(), v.data.data(), v.data.size());
    for (float e : x) REQUIRE(e == 1.0f);
  }
  // Every row of some matrices holds exactly the scheme's bytes.
  for (const char* name : {"token_embd.weight", "blk.2.ffn_down.weight", "blk.0.attn_k.weight", "output.weight"}) {
    const io::GgufTensorView v = f.tensor(name);
    const std::size_t n = v.shape[0], rows = v.shape[1], row_bytes = v.data.size() / rows;
    for (std::size_t r = 0; r < rows; r += 7) {
      const std::vector<std::uint8_t> want = expected_row_bytes(c.type, 3, name, r, n);
      INFO(name << " row " << r);
      REQUIRE(std::memcmp(v.data.data() + r * row_bytes, want.data(), row_bytes) == 0);
    }
  }
  // Scale: std 1 / sqrt(row length), mean 0 (F32: the stored values themselves).
  if (c.type == GgmlType::F32) {
    const io::GgufTensorView v = f.tensor("blk.0.ffn_gate.weight");
    const float* x = reinterpret_cast<const float*>(v.data.data());
    double sum = 0, sq = 0;
    for (std::size_t i = 0; i < v.n_elements; ++i) {
      sum += x[i];
      sq += double{x[i]} * x[i];
    }
    const double mean = sum / static_cast<double>(v.n_elements);
    const double sd = std::sqrt(sq / static_cast<double>(v.n_elements) - mean * mean);
    CHECK(std::abs(mean) < 0.01);
    CHECK(sd == Approx(0.125).epsilon(0.03));
  }
  require_finite_logits(path);
}

TEST_CASE("powerinfer2 make-model: weights are pinned numbers, independent of machine and threads", "[unit]") {
  // From an independent Python transcription of the scheme (docs/powerinfer2.md, make-model).
  auto bits = [](float x) { std::uint32_t b; std::memcpy(&b, &x, 4); return b; };
  std::vector<float> row(64);
  mm::generate_row(1, "blk.0.attn_q.weight", 0, mm::weight_std(64), row);
  CHECK(bits(row[0]) == 0xbe221957u);
  CHECK(bits(row[1]) == 0xbdcd466cu);
  CHECK(bits(row[2]) == 0xbe2ece21u);
  CHECK(bits(row[3]) == 0xbdbacdecu);
  mm::generate_row(42, "token_embd.weight", 511, mm::weight_std(64), row);
  CHECK(bits(row[60]) == 0xbcf78558u);
  CHECK(bits(row[63]) == 0x3d5d564fu);
  CHECK(mm::weight_std(64) == 0.125f);

  testing::TempDir dir;
  const std::string a = read_bytes(write_tiny(dir, "a.gguf", "--type q4_0 --seed 5 -t 1"));
  const std::string b = read_bytes(write_tiny(dir, "b.gguf", "--type q4_0 --seed 5 -t 2"));
  const std::string other = read_bytes(write_tiny(dir, "c.gguf", "--type q4_0 --seed 6 -t 2"));
  CHECK(a == b);
  REQUIRE(a.size() == other.size());  // same metadata and shapes (the seed is in the name)
  CHECK(a != other);
  std::size_t differing = 0;
  for (std::size_t i = a.size() / 2; i < a.size(); ++i) differing += a[i] != other[i];
  CHECK(differing > a.size() / 4);  // the tensor data differs throughout
}

TEST_CASE("powerinfer2 make-model: each activation is stored and generate runs on it", "[unit]") {
  const std::string act = GENERATE("swiglu", "reglu", "drelu");
  const std::string type = GENERATE("f16", "q8_0");
  CAPTURE(act, type);
  testing::TempDir dir;
  const auto path = write_tiny(dir, "m.gguf", "--activation " + act + " --type " + type + " --seed 9");
  CHECK(io::GgufFile(path.string()).get_string("powerinfer2.ffn_activation") == act);
  CHECK(mdl::Model(path.string()).config.activation ==
        (act == "swiglu" ? powerinfer2::model::FfnActivation::swiglu
                         : act == "reglu" ? powerinfer2::model::FfnActivation::reglu : powerinfer2::model::FfnActivation::drelu));
  require_finite_logits(path);
  const testing::CommandResult r = cli("generate -m " + q(path) + " -p 'Once upon a time' -n 12 --temp 0.8 -s 4 --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["generated_tokens"].get<int>() >= 1);
  CHECK(j["generated_tokens"].get<int>() <= 12);
  CHECK(j["tokens"].size() == j["generated_tokens"].get<std::size_t>());
  CHECK(j["prompt_tokens"].get<int>() == 1 + 13 + 4);  // BOS, a letter or a "▁" each
  for (const auto& t : j["tokens"]) CHECK(t.get<int>() < static_cast<int>(kVocab));
  CHECK(j["prefill_tok_s"].get<double>() > 0.0);
  CHECK(std::isfinite(j["decode_tok_s"].get<double>()));
  // The same seed without --json prints the same text.
  const testing::CommandResult plain = cli("generate -m " + q(path) + " -p 'Once upon a time' -n 12 --temp 0.8 -s 4");
  CHECK(as_json_text(plain.out) == j["text"].get<std::string>() + "\n");
}

TEST_CASE("powerinfer2 make-model: the byte-level vocabulary tokenizes any text", "[unit]") {
  testing::TempDir dir;
  const auto path = write_tiny(dir, "m.gguf", "--type q8_0");
  // "▁Hi there": "▁" is 259, any other byte b is b + 3.
  testing::CommandResult r = cli("tokenize -m " + q(path) + " -p 'Hi there' --bos");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "1 259 75 108 259 119 107 104 117 104\n");
  const io::GgufFile f(path.string());
  const powerinfer2::model::Tokenizer tok = powerinfer2::model::Tokenizer::from_gguf(f);
  // (Invalid UTF-8 followed by a space is left out: as in llama.cpp, a 0xFx byte takes the
  // next 3 bytes into its character, so that "▁" becomes byte tokens and decodes as "▁".)
  for (std::string s : {"héllo wörld\n", "  two  spaces", "bytes \x01\x7f\xff", ""}) {
    const std::vector<powerinfer2::model::TokenId> ids = tok.encode(s, false);
    for (auto id : ids) CHECK((id >= 3 && id < 260));
    CHECK(tok.decode(ids, true) == s);
  }
}

TEST_CASE("powerinfer2 make-model: --vocab copies a SentencePiece vocabulary and its size", "[unit]") {
  testing::TempDir dir;
  const std::string vocab = tokfix::write_vocab(dir / "vocab.gguf", tokfix::small_vocab());
  const auto path = write_tiny(dir, "m.gguf", "--type q4_0 --vocab " + q(vocab));
  const io::GgufFile f(path.string()), v(vocab);
  CHECK(f.get_u32("llama.vocab_size") == tokfix::kVocabSize);
  CHECK(f.tensor("token_embd.weight").shape[1] == tokfix::kVocabSize);
  CHECK(f.tensor("output.weight").shape[1] == tokfix::kVocabSize);
  for (const io::GgufKeyValue& kv : v.metadata()) {
    if (!kv.key.starts_with("tokenizer.")) continue;
    CAPTURE(kv.key);
    REQUIRE(f.find(kv.key) != nullptr);
    CHECK(*f.find(kv.key) == kv.value);
  }
  for (const char* text : {"ab bc", "a b c aa", "é"}) {
    const testing::CommandResult from_model = cli("tokenize -m " + q(path) + " -p " + testing::shell_quote(text));
    const testing::CommandResult from_vocab = cli("tokenize -m " + q(vocab) + " -p " + testing::shell_quote(text));
    REQUIRE(from_model.exit_code == 0);
    CHECK(from_model.out == from_vocab.out);
  }
  require_finite_logits(path);
}

TEST_CASE("powerinfer2 make-model: bad input is one error line with the choices, and leaves no file", "[unit]") {
  testing::TempDir dir;
  const std::string out = q(dir / "out.gguf");
  auto check = [&](const std::string& args, int code, const std::string& needle) {
    CAPTURE(args);
    const testing::CommandResult r = make_model(args);
    INFO(r.err);
    CHECK(r.exit_code == code);
    CHECK(r.err.rfind("error: ", 0) == 0);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);  // error + optional hint
    CHECK(r.out.empty());
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.path().filename() != "vocab.gguf" &&
                                                                                   e.path().filename() != "notgguf.txt" &&
                                                                                   e.path().filename() != "notokens.gguf" &&
                                                                                   e.path().filename() != "gpt2.gguf";
    CHECK(files == 0);
  };
  check("--preset huge -o " + out, 2, "tiny, 1b, 7b");
  check("--preset tiny --type q5_k -o " + out, 2, "f32, f16, q8_0, q4_0");
  check("--preset tiny --activation gelu -o " + out, 2, "swiglu, reglu, drelu");
  check("--preset tiny", 2, "--output");
  check("--preset tiny --seed x -o " + out, 2, "--seed");
  check("--preset tiny -o " + q(dir / "no-such-dir" / "m.gguf"), 4, "no-such-dir");
  check("--preset tiny --sparsity 0.5 -o " + out, 2, "--sparsity needs a ReGLU or dReLU activation");
  check("--preset tiny --activation drelu --sparsity 0.995 -o " + out, 2, "--sparsity must be in [0, 0.99)");

  testing::write_text(dir / "notgguf.txt", "this is not a model\n");
  check("--preset tiny --vocab " + q(dir / "notgguf.txt") + " -o " + out, 3, "notgguf.txt");
  check("--preset tiny --vocab " + q(dir / "missing.gguf") + " -o " + out, 4, "missing.gguf");
  io::GgufWriter no_tokens;
  no_tokens.set("general.architecture", "llama");
  no_tokens.write((dir / "notokens.gguf").string());
  check("--preset tiny --vocab " + q(dir / "notokens.gguf") + " -o " + out, 3, "tokenizer.ggml.tokens");
  tokfix::write_vocab(dir / "gpt2.gguf", tokfix::small_vocab(),
                      [](io::GgufWriter& w) { w.set("tokenizer.ggml.model", "gpt2"); });
  check("--preset tiny --vocab " + q(dir / "gpt2.gguf") + " -o " + out, 3, "\"llama\"");
}

TEST_CASE("powerinfer2 make-model: gguf-py reads the file and a Python transcription of the scheme gives the same bytes", "[golden]") {
  const std::string python = PWPI_PYTHON_GGUF;
  if (python.empty()) PWPI_SKIP("python gguf package not installed");
  testing::TempDir dir;
  const auto f32 = write_tiny(dir, "f32.gguf", "--type f32 --seed 11 --activation drelu --sparsity 0");
  const auto q40 = write_tiny(dir, "q4_0.gguf", "--type q4_0 --seed 11");
  const auto q80 = write_tiny(dir, "q8_0.gguf", "--type q8_0 --seed 11");
  const auto f16 = write_tiny(dir, "f16.gguf", "--type f16 --seed 11");
  // The scheme as docs/powerinfer2.md describes it, transcribed independently of model_maker.cpp.
  testing::write_text(dir / "check.py", R"PY(
import math, sys
import numpy as np
import gguf
from gguf import GGUFReader, GGMLQuantizationType as T

M, G = (1 << 64) - 1, 0x9E3779B97F4A7C15
def mix(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
    return z ^ (z >> 31)
def fnv1a(s):
    h = 0xcbf29ce484222325
    for c in s.encode():
        h = ((h ^ c) * 0x100000001b3) & M
    return h
def row(seed, name, r, n):
    std = np.float32(1.0 / math.sqrt(n))
    scale = np.float32(float(std) / math.sqrt(4.0 * (65536.0 * 65536.0 - 1.0) / 12.0))
    st = mix(seed ^ mix((fnv1a(name) + r * G) & M))
    out = np.empty(n, np.float32)
    for i in range(n):
        st = (st + G) & M
        x = mix(st)
        out[i] = np.float32((x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48) - 131070) * scale
    return out

def field(r, key):
    f = r.fields[key]
    v = f.parts[f.data[0]]
    return bytes(v).decode() if f.types[0] == gguf.GGUFValueType.STRING else v[0]

want_type = {"f32": T.F32, "f16": T.F16, "q8_0": T.Q8_0, "q4_0": T.Q4_0}
for path in sys.argv[1:]:
    kind = path.rsplit("/", 1)[1][:-5]
    r = GGUFReader(path)
    assert field(r, "general.architecture") == "llama"
    assert field(r, "llama.block_count") == 3 and field(r, "llama.embedding_length") == 64
    assert field(r, "llama.attention.head_count_kv") == 2 and field(r, "tokenizer.ggml.model") == "llama"
    assert field(r, "general.file_type") == {"f32": 0, "f16": 1, "q8_0": 7, "q4_0": 2}[kind]
    assert len(r.fields["tokenizer.ggml.tokens"].data) == 512
    assert len(r.tensors) == 30, len(r.tensors)
    for t in r.tensors:
        norm = t.name.endswith("norm.weight")
        assert t.tensor_type == (T.F32 if norm else want_type[kind]), (t.name, t.tensor_type)
        if norm:
            assert np.all(t.data == 1.0), t.name
            continue
        n = int(t.shape[0])
        for ri in (0, int(t.shape[1]) - 1):
            x = row(11, t.name, ri, n)
            if kind == "f32":
                assert np.array_equal(t.data[ri], x), (t.name, ri)
            elif kind == "f16":
                assert np.array_equal(t.data[ri].view(np.uint16), x.astype(np.float16).view(np.uint16)), (t.name, ri)
            else:
                got = np.asarray(t.data[ri]).tobytes()
                assert got == gguf.quants.quantize(x.reshape(1, -1), want_type[kind]).tobytes(), (t.name, ri)
    print(path, "ok")
)PY");
  const testing::CommandResult r = testing::run_command(testing::shell_quote(python) + " " + q(dir / "check.py") + " " +
                                                        q(f32) + " " + q(f16) + " " + q(q80) + " " + q(q40));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}

TEST_CASE("powerinfer2 make-model: --vocab with llama.cpp's Llama-2 vocabulary", "[golden]") {
  const std::filesystem::path shared = testing::shared_dir();
  const std::filesystem::path vocab = shared / "tokenizer" / "ggml-vocab-llama-spm.gguf";
  if (shared.empty() || !std::filesystem::exists(vocab)) PWPI_SKIP("../shared/tokenizer/ggml-vocab-llama-spm.gguf not found");
  testing::TempDir dir;
  const auto path = write_tiny(dir, "m.gguf", "--type q8_0 --vocab " + q(vocab));
  const io::GgufFile f(path.string());
  CHECK(f.get_u32("llama.vocab_size") == 32000);
  CHECK(f.tensor("token_embd.weight").shape[1] == 32000);
  const testing::CommandResult r = cli("tokenize -m " + q(path) + " -p 'Hello world'");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "15043 3186\n");  // llama.cpp's ids on this vocabulary
  require_finite_logits(path);
}

TEST_CASE("powerinfer2 make-model: the 1b preset (22 layers) gives finite logits in Q4_0", "[slow]") {
  testing::TempDir dir;
  const std::filesystem::path out = dir / "1b.gguf";
  const testing::CommandResult r = make_model("--preset 1b --type q4_0 -q -o " + q(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const io::GgufFile f(out.string());
  CHECK(f.get_u32("llama.block_count") == 22);
  CHECK(f.get_u32("llama.embedding_length") == 2048);
  CHECK(f.get_u32("llama.feed_forward_length") == 5632);
  CHECK(f.get_u32("llama.attention.head_count") == 32);
  CHECK(f.get_u32("llama.attention.head_count_kv") == 4);
  CHECK(f.get_u32("llama.vocab_size") == 32000);
  CHECK(f.tensor_count() == 3 + 9 * 22);
  require_finite_logits(out, 16);
}

TEST_CASE("powerinfer2 make-model: rows that are not whole 32-blocks stay F16; generated tensors write the same bytes", "[unit]") {
  CHECK(mm::tensor_type(GgmlType::Q4_0, 2, 64) == GgmlType::Q4_0);
  CHECK(mm::tensor_type(GgmlType::Q8_0, 2, 80) == GgmlType::F16);
  CHECK(mm::tensor_type(GgmlType::Q4_0, 1, 64) == GgmlType::F32);
  CHECK(mm::tensor_type(GgmlType::F32, 2, 80) == GgmlType::F32);

  // A shape no preset has: FFN 80, so ffn_down's rows (80) are not whole blocks.
  testing::TempDir dir;
  mm::MakeModelOptions o;
  o.shape = *mm::find_preset("TINY");
  o.shape.ffn_dim = 80;
  o.shape.n_layer = 2;
  o.type = GgmlType::Q4_0;
  common::ThreadPool pool(2);
  const mm::MakeModelResult r = mm::make_model(o, (dir / "m.gguf").string(), pool);
  CHECK(r.kept_f16 == std::vector<std::string>{"blk.0.ffn_down.weight", "blk.1.ffn_down.weight"});
  CHECK(r.n_tensors == 3 + 9 * 2);
  const io::GgufFile f((dir / "m.gguf").string());
  CHECK(f.tensor("blk.1.ffn_down.weight").type == GgmlType::F16);
  CHECK(f.tensor("blk.1.ffn_up.weight").type == GgmlType::Q4_0);
  CHECK(f.get_u32("llama.feed_forward_length") == 80);
  require_finite_logits(dir / "m.gguf");

  // GgufWriter: a generated tensor and the same bytes given up front make the same file.
  std::vector<std::uint8_t> a(64 * 3 * 4), b(34 * 2 * 5);
  for (std::size_t i = 0; i < a.size(); ++i) a[i] = static_cast<std::uint8_t>(i * 7);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<std::uint8_t>(i * 13 + 1);
  io::GgufWriter given, generated;
  for (io::GgufWriter* w : {&given, &generated}) w->set("k", std::uint32_t{1});
  given.add_tensor("a", GgmlType::F32, {64, 3}, std::span<const std::uint8_t>(a));
  given.add_tensor("b", GgmlType::Q8_0, {64, 5}, std::span<const std::uint8_t>(b));
  int calls = 0;
  generated.add_tensor_generated("a", GgmlType::F32, {64, 3}, [&](std::span<std::uint8_t> out) {
    REQUIRE(out.size() == a.size());
    std::copy(a.begin(), a.end(), out.begin());
    ++calls;
  });
  generated.add_tensor_generated("b", GgmlType::Q8_0, {64, 5}, [&](std::span<std::uint8_t> out) {
    REQUIRE(out.size() == b.size());
    std::copy(b.begin(), b.end(), out.begin());
    ++calls;
  });
  std::ostringstream s1, s2;
  given.write(s1);
  generated.write(s2);
  CHECK(calls == 2);
  CHECK(s1.str() == s2.str());
  CHECK_THROWS_AS(generated.add_tensor_generated("c", GgmlType::Q4_0, {48}, [](std::span<std::uint8_t>) {}),
                  common::InputError);
}
