// Golden checks against outside references: llama.cpp's published vocabulary GGUF, a
// checked-in file whose bytes the reference reader (PyPI gguf) validated, and that reader
// run on the writer's output.
//
// PWPI_UPDATE_GOLDEN=1 rewrites the files in tests/data/powerinfer2/ that differ (then
// validate them with check_gguf_reference.py before committing); a test that rewrote its
// file is reported skipped, not passed: it compared nothing.
#include <cstdlib>

#include "common/file_io.hpp"
#include "gguf_fixtures.hpp"
#include "io/gguf_reader.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;

namespace {

std::filesystem::path data_dir() { return testing::source_dir() / "tests" / "data" / "powerinfer2"; }

bool updating() { return std::getenv("PWPI_UPDATE_GOLDEN") != nullptr; }

}  // namespace

TEST_CASE("powerinfer2 gguf golden: llama.cpp's Llama SPM vocabulary file", "[golden]") {
  const std::filesystem::path shared = testing::shared_dir();
  const std::filesystem::path path = shared / "tokenizer" / "ggml-vocab-llama-spm.gguf";
  if (shared.empty() || !std::filesystem::exists(path)) PWPI_SKIP("needs ../shared/tokenizer/ggml-vocab-llama-spm.gguf");
  const io::GgufFile f(path.string());
  CHECK(f.kind() == io::GgufKind::gguf);
  CHECK(f.version() == 3);
  CHECK(f.metadata().size() == 22);
  CHECK(f.tensor_count() == 0);
  CHECK(f.get_string("general.architecture") == "llama");
  CHECK(f.get_string("tokenizer.ggml.model") == "llama");
  CHECK(f.get_u32("llama.block_count") == 32u);
  CHECK(f.get_f32("llama.attention.layer_norm_rms_epsilon") == 1e-5f);
  CHECK(f.get_u32("tokenizer.ggml.bos_token_id") == 1u);
  CHECK(f.get_bool("tokenizer.ggml.add_bos_token"));
  CHECK_FALSE(f.get_bool("tokenizer.ggml.add_eos_token"));

  const std::vector<std::string>& tokens = f.get_string_array("tokenizer.ggml.tokens");
  const std::vector<float> scores = f.get_f32_array("tokenizer.ggml.scores");
  const std::vector<std::int32_t> types = f.get_i32_array("tokenizer.ggml.token_type");
  REQUIRE(tokens.size() == 32000);
  REQUIRE(scores.size() == 32000);
  REQUIRE(types.size() == 32000);
  // Ids, strings, scores and types as gguf.GGUFReader reads them.
  CHECK(tokens[0] == "<unk>");
  CHECK(types[0] == 2);
  CHECK(tokens[1] == "<s>");
  CHECK(tokens[2] == "</s>");
  CHECK(types[2] == 3);
  CHECK(tokens[13] == "<0x0A>");
  CHECK(types[13] == 6);
  CHECK(tokens[450] == "\xe2\x96\x81The");  // "▁The"
  CHECK(scores[450] == -191.0f);
  CHECK(tokens[1576] == "The");
  CHECK(tokens[29871] == "\xe2\x96\x81");
  CHECK(tokens[29889] == ".");
  CHECK(scores[29889] == -29630.0f);
  CHECK(tokens[31999] == "\xe7\xbb\x99");  // "给"
  CHECK(types[31999] == 1);
}

TEST_CASE("powerinfer2 gguf golden: the writer's bytes equal the checked-in file", "[golden]") {
  const std::string bytes = fixtures::to_bytes(fixtures::rich_writer());
  const std::filesystem::path golden = data_dir() / "writer-golden.gguf";
  const std::string expected = std::filesystem::exists(golden) ? common::read_file(golden.string()) : "";
  if (updating() && bytes != expected) {
    common::write_file_atomic(golden.string(), bytes);
    PWPI_SKIP("PWPI_UPDATE_GOLDEN: rewrote " + golden.string() + ", not checked (validate it with " +
              "check_gguf_reference.py, then rerun without PWPI_UPDATE_GOLDEN)");
  }
  REQUIRE(bytes.size() == expected.size());
  CHECK(bytes == expected);
  std::size_t first_difference = 0;
  while (first_difference < bytes.size() && bytes[first_difference] == expected[first_difference]) ++first_difference;
  CHECK(first_difference == bytes.size());
}

TEST_CASE("powerinfer2 gguf golden: inspect's table for the checked-in file", "[golden]") {
  const std::filesystem::path expected_path = data_dir() / "writer-golden.inspect.txt";
  const testing::CommandResult r = testing::run_command("cd '" + data_dir().string() + "' && '" + POWERINFER2_CLI +
                                                        "' inspect writer-golden.gguf");
  REQUIRE(r.exit_code == 0);
  const std::string expected =
      std::filesystem::exists(expected_path) ? common::read_file(expected_path.string()) : "";
  if (updating() && r.out != expected) {
    common::write_file_atomic(expected_path.string(), r.out);
    PWPI_SKIP("PWPI_UPDATE_GOLDEN: rewrote " + expected_path.string() +
              ", not checked (rerun without PWPI_UPDATE_GOLDEN)");
  }
  CHECK(r.out == expected);
}

TEST_CASE("powerinfer2 gguf golden: the reference reader agrees on the writer's output", "[golden]") {
  const std::string python = PWPI_PYTHON_GGUF;
  if (python.empty()) PWPI_SKIP("python gguf package not installed when configured (pip install gguf)");
  testing::TempDir dir;
  const std::string a64 = (dir / "align64.gguf").string();
  const std::string small = (dir / "small.gguf").string();
  fixtures::rich_writer(64).write(a64);
  fixtures::small_writer().write(small);
  const std::string script = (testing::source_dir() / "tests" / "powerinfer2" / "check_gguf_reference.py").string();
  const testing::CommandResult r = testing::run_command("'" + python + "' '" + script + "' --cli '" + POWERINFER2_CLI +
                                                        "' '" + a64 + "' '" + small + "'");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
}
