// `powerinfer2-cli inspect` run as a process: output, exit codes 0/2/3/4 and the one-line
// `error: ...` on stderr.
#include <nlohmann/json.hpp>

#include "gguf_fixtures.hpp"
#include "test_support.hpp"

namespace {

std::string cli() { return std::string("'") + POWERINFER2_CLI + "'"; }

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace

TEST_CASE("powerinfer2 inspect: tables for people", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "m.gguf").string();
  fixtures::small_writer().write(path);
  const testing::CommandResult r = testing::run_command(cli() + " inspect " + path);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(r.out.find(path + ": GGUF v3, ") == 0);
  CHECK(r.out.find("  alignment:     32\n") != std::string::npos);
  CHECK(r.out.find("metadata (2 keys):") != std::string::npos);
  CHECK(r.out.find("tokenizer.ggml.tokens  string[2]  [\"a\", \"bb\"]") != std::string::npos);
  CHECK(r.out.find("tensors (2):") != std::string::npos);
  CHECK(r.out.find("b.weight  F32   4x2") != std::string::npos);
  CHECK(r.out.find("totals: 2 tensors, 40 parameters, 50 B of tensor data") != std::string::npos);

  const testing::CommandResult quiet = testing::run_command(cli() + " inspect --no-tensors " + path);
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.out.find("tensors (2):") == std::string::npos);
  CHECK(quiet.out.find("totals: 2 tensors") != std::string::npos);
}

TEST_CASE("powerinfer2 inspect: one JSON object with --json", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "m.gguf").string();
  fixtures::rich_writer(64).write(path);
  testing::CommandResult r = testing::run_command(cli() + " inspect --json --max-array 2 " + path);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["format"] == "GGUF");
  CHECK(j["version"] == 3);
  CHECK(j["alignment"] == 64);
  CHECK(j["metadata"]["general.architecture"]["value"] == "llama");
  CHECK(j["metadata"]["test.uint64"]["value"] == 18000000000000000000ull);
  CHECK(j["metadata"]["test.array.int32"]["length"] == 3);
  CHECK(j["metadata"]["test.array.int32"]["value"] == nlohmann::json::array({-5, 0}));
  CHECK(j["metadata"]["test.array.nested"]["element_type"] == "array");
  CHECK(j["metadata"]["test.array.nested"]["value"] == nlohmann::json::parse("[[1, 2], [3]]"));
  CHECK(j["tensors"].size() == 13);
  CHECK(j["tensors"][4]["name"] == "blk.0.attn_q.weight");
  CHECK(j["tensors"][4]["type"] == "Q4_0");
  CHECK(j["tensors"][4]["shape"] == nlohmann::json::array({64, 3}));
  CHECK(j["tensors"][4]["size"] == 2 * 18 * 3);
  CHECK(j["tensors"][4]["offset"].get<std::uint64_t>() % 64 == 0);
  CHECK(j["totals"]["tensors"] == 13);
  CHECK(j["totals"]["by_type"]["F32"]["tensors"] == 2);

  r = testing::run_command(cli() + " inspect --json --no-tensors " + path);
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(nlohmann::json::parse(r.out).contains("tensors"));
}

TEST_CASE("powerinfer2 inspect: PowerInfer's sparse GGUF is named", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "sparse.gguf").string();
  auto w = fixtures::small_writer();
  w.set_kind(powerinfer2::io::GgufKind::powerinfer);
  w.write(path);
  const testing::CommandResult r = testing::run_command(cli() + " inspect " + path);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find(path + ": PowerInfer sparse GGUF (magic PWRI), version 3") == 0);
}

TEST_CASE("powerinfer2 inspect: exit codes and error lines", "[unit]") {
  testing::TempDir dir;
  const std::string missing = (dir / "absent.gguf").string();
  testing::CommandResult r = testing::run_command(cli() + " inspect " + missing);
  CHECK(r.exit_code == 4);
  CHECK(r.out.empty());
  CHECK(r.err == "error: " + missing + ": cannot open for reading: No such file or directory\n");

  const std::string bad = (dir / "bad.gguf").string();
  std::string bytes = fixtures::to_bytes(fixtures::small_writer());
  bytes[1] = 'X';
  fixtures::write_bytes(bad, bytes);
  r = testing::run_command(cli() + " inspect " + bad);
  CHECK(r.exit_code == 3);
  CHECK(r.out.empty());
  CHECK(first_line(r.err) ==
        "error: " + bad + ": byte 0: header: expected the magic \"GGUF\" (or PowerInfer's \"PWRI\"), got \"GXUF\"");

  fixtures::write_bytes(bad, std::string_view(fixtures::to_bytes(fixtures::small_writer())).substr(0, 40));
  r = testing::run_command(cli() + " inspect --json " + bad);
  CHECK(r.exit_code == 3);
  CHECK(r.out.empty());
  CHECK(first_line(r.err).rfind("error: " + bad + ": byte ", 0) == 0);

  r = testing::run_command(cli() + " inspect");
  CHECK(r.exit_code == 2);
  r = testing::run_command(cli() + " inspect --max-array -3 " + bad);
  CHECK(r.exit_code == 2);
}
