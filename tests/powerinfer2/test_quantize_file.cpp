// `powerinfer2-cli quantize` and prep::quantize_gguf: which tensors are quantized, their
// bytes and values, untouched tensors and metadata, and the command's errors.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"
#include "prep/quantize_file.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
namespace ops = powerinfer2::ops;
namespace prep = powerinfer2::prep;
using io::GgmlType;

namespace {

std::string cli() { return std::string("'") + POWERINFER2_CLI + "'"; }

struct Source {
  std::string name;
  GgmlType type;
  std::vector<std::uint64_t> shape;
  bool quantized;  // expected
};

// A small llama-like model: norms (1-D), matrices in F32 / F16 / BF16, one whose rows of
// 172 are not whole blocks (stories260K's ffn_down), a predictor, an already quantized one.
const std::vector<Source>& sources() {
  static const std::vector<Source> s = {
      {"token_embd.weight", GgmlType::F32, {64, 10}, true},
      {"blk.0.attn_norm.weight", GgmlType::F32, {64}, false},
      {"blk.0.attn_q.weight", GgmlType::F16, {64, 64}, true},
      {"blk.0.ffn_gate.weight", GgmlType::BF16, {64, 172}, true},
      {"blk.0.ffn_down.weight", GgmlType::F32, {172, 64}, false},
      {"blk.0.ffn_up.weight", GgmlType::F32, {64, 172}, true},
      {"blk.0.fc1.weight", GgmlType::F32, {64, 8}, false},
      {"blk.0.column.weight", GgmlType::F32, {64, 1}, false},  // 2-D in the file, 1-D to ggml
      {"blk.0.attn_k.weight", GgmlType::Q4_K, {256, 2}, false},
      {"rope_freqs", GgmlType::F32, {32, 2}, false},
      {"output.weight", GgmlType::F32, {64, 10}, true},
  };
  return s;
}

std::vector<std::uint8_t> source_bytes(const Source& s, std::uint32_t seed) {
  const std::uint64_t n = *io::ggml_element_count(s.shape);
  std::vector<std::uint8_t> bytes(*io::ggml_tensor_bytes(s.type, s.shape));
  std::mt19937 rng(seed);
  if (io::ggml_type_info(s.type).quantized) {  // any bytes will do: it is copied
    for (std::uint8_t& b : bytes) b = static_cast<std::uint8_t>(rng());
    return bytes;
  }
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (std::uint64_t i = 0; i < n; ++i) {
    const float v = normal(rng) * (i % 32 == 5 ? 8.0f : 1.0f);
    if (s.type == GgmlType::F32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    } else if (s.type == GgmlType::F16) {
      const std::uint16_t h = ops::fp32_to_fp16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    } else {
      const std::uint16_t h = ops::fp32_to_bf16(v);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  return bytes;
}

std::vector<float> to_f32(GgmlType type, const std::uint8_t* p, std::size_t n) {
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    if (type == GgmlType::F32) {
      std::memcpy(&out[i], p + 4 * i, 4);
    } else {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      out[i] = type == GgmlType::F16 ? ops::fp16_to_fp32(h) : ops::bf16_to_fp32(h);
    }
  }
  return out;
}

void write_source(const std::string& path) {
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set("general.name", "quantize test");
  w.set("general.file_type", std::uint32_t{0});
  w.set("llama.block_count", std::uint32_t{1});
  w.set_array("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>", "</s>"});
  std::uint32_t seed = 1;
  for (const Source& s : sources()) w.add_tensor(s.name, s.type, s.shape, source_bytes(s, seed++));
  w.write(path);
}

}  // namespace

TEST_CASE("powerinfer2 quantize: weight matrices to Q8_0 / Q4_0, everything else untouched", "[unit]") {
  const GgmlType target = GENERATE(GgmlType::Q8_0, GgmlType::Q4_0);
  testing::TempDir dir;
  const std::string in_path = (dir / "in.gguf").string(), out_path = (dir / "out.gguf").string();
  write_source(in_path);
  common::ThreadPool pool(2);
  const prep::QuantizeReport report = prep::quantize_gguf(in_path, out_path, target, pool);

  const io::GgufFile in(in_path), out(out_path);
  // Metadata: the same keys in the same order, file type set, quantization version added.
  REQUIRE(out.metadata().size() == in.metadata().size() + 1);
  for (std::size_t i = 0; i < in.metadata().size(); ++i) {
    const auto& kv = in.metadata()[i];
    CHECK(out.metadata()[i].key == kv.key);
    if (kv.key != "general.file_type") CHECK(out.metadata()[i].value == kv.value);
  }
  CHECK(out.get_u32("general.file_type") == (target == GgmlType::Q8_0 ? 7u : 2u));
  CHECK(out.get_u32("general.quantization_version") == 2u);

  REQUIRE(out.tensor_count() == sources().size());
  REQUIRE(report.tensors.size() == sources().size());
  std::size_t expected_quantized = 0;
  for (std::size_t i = 0; i < sources().size(); ++i) {
    const Source& s = sources()[i];
    INFO(s.name);
    const io::GgufTensorView a = in.tensor(i), b = out.tensor(i);
    CHECK(b.name == s.name);
    CHECK(std::vector<std::uint64_t>(b.shape.begin(), b.shape.end()) == s.shape);
    CHECK(report.tensors[i].kept_because.empty() == s.quantized);
    if (!s.quantized) {
      CHECK(b.type == s.type);
      REQUIRE(a.data.size() == b.data.size());
      CHECK(std::memcmp(a.data.data(), b.data.data(), a.data.size()) == 0);
      continue;
    }
    ++expected_quantized;
    CHECK(b.type == target);
    const std::size_t n_cols = s.shape[0], n_rows = a.n_elements / n_cols;
    for (std::size_t r = 0; r < n_rows; ++r) {
      const std::vector<float> x = to_f32(s.type, a.data.data() + r * a.size_bytes / n_rows, n_cols);
      const std::size_t row_bytes = b.size_bytes / n_rows;
      std::vector<std::uint8_t> want(row_bytes);
      std::vector<float> back(n_cols);
      if (target == GgmlType::Q8_0) {
        ops::quantize_row_q8_0(x.data(), reinterpret_cast<ops::BlockQ8_0*>(want.data()), n_cols);
        std::vector<ops::BlockQ8_0> got(n_cols / 32);
        std::memcpy(got.data(), b.data.data() + r * row_bytes, row_bytes);
        ops::dequantize_row_q8_0(got.data(), back.data(), n_cols);
      } else {
        ops::quantize_row_q4_0(x.data(), reinterpret_cast<ops::BlockQ4_0*>(want.data()), n_cols);
        std::vector<ops::BlockQ4_0> got(n_cols / 32);
        std::memcpy(got.data(), b.data.data() + r * row_bytes, row_bytes);
        ops::dequantize_row_q4_0(got.data(), back.data(), n_cols);
      }
      CHECK(std::memcmp(want.data(), b.data.data() + r * row_bytes, row_bytes) == 0);
      // Dequantized values within the block bound (see test_ops.cpp).
      for (std::size_t blk = 0; blk < n_cols / 32; ++blk) {
        float amax = 0;
        for (std::size_t j = blk * 32; j < blk * 32 + 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const double bound = target == GgmlType::Q8_0 ? amax / 127.0 * (0.5 + 127.0 / 2048) : amax / 8.0 * (1 + 8.0 / 2048);
        for (std::size_t j = blk * 32; j < blk * 32 + 32; ++j) CHECK(std::fabs(x[j] - back[j]) <= bound + 1e-7);
      }
    }
  }
  CHECK(report.n_quantized() == expected_quantized);
  CHECK(report.bytes_out < report.bytes_in);

  // The command line writes the same bytes, whatever the thread count.
  const std::string cli_path = (dir / "cli.gguf").string();
  const std::string type_name = target == GgmlType::Q8_0 ? "q8_0" : "Q4_0";
  const testing::CommandResult r = testing::run_command(cli() + " quantize -t 1 " + in_path + " " + cli_path + " " + type_name);
  CHECK(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("kept blk.0.ffn_down.weight in F32: row length 172 is not a multiple of 32") != std::string::npos);
  CHECK(r.err.find("quantized " + std::to_string(expected_quantized) + " of " + std::to_string(sources().size()) + " tensors") !=
        std::string::npos);
  CHECK(common::read_file(cli_path) == common::read_file(out_path));
}

TEST_CASE("powerinfer2 quantize: bad command lines and inputs", "[unit]") {
  testing::TempDir dir;
  const std::string in_path = (dir / "in.gguf").string(), out_path = (dir / "out.gguf").string();
  write_source(in_path);

  testing::CommandResult r = testing::run_command(cli() + " quantize " + in_path + " " + out_path + " q5_k");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("error: unknown quantization type 'q5_k'") == 0);
  CHECK(r.err.find("q8_0, q4_0") != std::string::npos);

  r = testing::run_command(cli() + " quantize " + (dir / "missing.gguf").string() + " " + out_path + " q8_0");
  CHECK(r.exit_code == 4);
  CHECK(r.err.find("missing.gguf") != std::string::npos);

  const std::string bad = (dir / "bad.gguf").string();
  testing::write_text(bad, "GGUF but not really");
  r = testing::run_command(cli() + " quantize " + bad + " " + out_path + " q4_0");
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("bad.gguf") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out_path));

  common::ThreadPool pool(1);
  CHECK_THROWS_AS(prep::quantize_gguf(in_path, out_path, GgmlType::Q4_K, pool), common::UsageError);
  CHECK_FALSE(std::filesystem::exists(out_path));
}
