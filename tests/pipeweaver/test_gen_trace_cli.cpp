// pipeweaver-cli gen-trace through the built executable: exit codes, the one-line error
// naming the file, byte-identical output for a seed, the --json summary, and a golden
// trace that pins the generator on every platform.
#include <filesystem>

#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "spec/trace.hpp"
#include "spec_test_util.hpp"

using pwtest::config;

namespace {

const std::string kCli = PIPEWEAVER_CLI;

std::string quoted(const std::filesystem::path& p) { return testing::shell_quote(p.string()); }

testing::CommandResult cli(const std::string& args) {
  return testing::run_cli(kCli, args);
}

std::string data(const std::string& name) {
  return (testing::source_dir() / "tests/pipeweaver" / name).string();
}

// The first line of stderr, which must be the whole error.
std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

}  // namespace

TEST_CASE("pipeweaver cli: gen-trace writes a trace and a summary", "[unit]") {
  testing::TempDir dir;
  const auto out = dir / "trace.jsonl";
  const auto r = cli("gen-trace --mix " + config("mixes/llava-instruct.json") + " --batches 20 --seed 3 -o " +
                     quoted(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.empty());
  CHECK(r.err.find("20 batches") != std::string::npos);
  CHECK(r.err.find("dynamicity (heaviest / lightest batch work): ") != std::string::npos);
  const auto batches = pipeweaver::spec::load_trace(out.string());
  CHECK(batches.size() == 20);
  CHECK(batches[0].samples.size() == 128);
  // Nothing but the trace is left in the directory (the temporary was renamed).
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("pipeweaver cli: the same seed writes byte-identical files", "[unit]") {
  testing::TempDir dir;
  const std::string mix = config("mixes/video-heavy.json");
  REQUIRE(cli("gen-trace -q --mix " + mix + " --seed 11 -o " + quoted(dir / "a.jsonl")).exit_code == 0);
  REQUIRE(cli("gen-trace -q --mix " + mix + " --seed 11 -o " + quoted(dir / "b.jsonl")).exit_code == 0);
  REQUIRE(cli("gen-trace -q --mix " + mix + " --seed 12 -o " + quoted(dir / "c.jsonl")).exit_code == 0);
  const std::string a = common::read_file((dir / "a.jsonl").string());
  CHECK(a == common::read_file((dir / "b.jsonl").string()));
  CHECK(a != common::read_file((dir / "c.jsonl").string()));
  CHECK(pipeweaver::spec::load_trace((dir / "a.jsonl").string()).size() == 100);
}

TEST_CASE("pipeweaver cli: --json prints one summary object on stdout", "[unit]") {
  testing::TempDir dir;
  const auto r = cli("gen-trace --mix " + config("mixes/audio-image.json") + " --model " +
                     config("models/audio-vision-7b.json") + " --json -o " + quoted(dir / "t.jsonl"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.err.empty());
  const common::Json j = common::Json::parse(r.out);
  CHECK(j["batches"] == 100);
  CHECK(j["samples"] == 6400);
  CHECK(j["model"] == "audio-vision-7b");
  CHECK(j["work"]["unit"] == "TFLOP");
  CHECK(j["tokens"]["audio"].get<std::int64_t>() > 0);
  CHECK(j["dynamicity"].get<double>() >= 2.5);
  CHECK(j["categories"]["speech"].get<std::int64_t>() > 0);
}

TEST_CASE("pipeweaver cli: usage errors exit 2", "[unit]") {
  testing::TempDir dir;
  auto r = cli("gen-trace -o " + quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).rfind("error: ", 0) == 0);
  CHECK(first_line(r.err).find("--mix") != std::string::npos);

  r = cli("gen-trace --mix " + config("mixes/llava-instruct.json") + " --batches 0 -o " +
          quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 2);

  r = cli("gen-trace --mix " + config("mixes/llava-instruct.json") + " --json -o -");
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err) ==
        "error: --json prints the summary on stdout, which -o - already uses for the trace");
  CHECK(!std::filesystem::exists(dir / "t.jsonl"));
}

TEST_CASE("pipeweaver cli: bad input exits 3 with one line naming the file", "[unit]") {
  testing::TempDir dir;
  const auto mix = dir / "bad-mix.json";
  testing::write_text(mix, R"({"version": 1, "context_limit": 2048, "batch": {"samples": 8},
    "categories": [{"name": "a", "share": 1.0, "text_tokens": -4}]})");
  auto r = cli("gen-trace --mix " + quoted(mix) + " -o " + quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err) ==
        "error: " + mix.string() +
            ": /categories/0/text_tokens: expected an integer in [1, 1000000000], got -4");
  CHECK(!std::filesystem::exists(dir / "t.jsonl"));

  testing::write_text(mix, "{\"version\": 1,\n \"context_limit\": 2048,,\n}");
  r = cli("gen-trace --mix " + quoted(mix) + " -o " + quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err).rfind("error: " + mix.string() + ":2:24: invalid JSON: ", 0) == 0);

  // A model without the mix's modality.
  r = cli("gen-trace --mix " + config("mixes/audio-image.json") + " --model " +
          config("models/lmm-37b.json") + " -o " + quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err) ==
        "error: model lmm-37b: mix audio-image has audio samples but the model has no audio modality");
}

TEST_CASE("pipeweaver cli: missing files exit 4", "[unit]") {
  testing::TempDir dir;
  const auto missing = dir / "nope.json";
  auto r = cli("gen-trace --mix " + quoted(missing) + " -o " + quoted(dir / "t.jsonl"));
  CHECK(r.exit_code == 4);
  CHECK(first_line(r.err) ==
        "error: " + missing.string() + ": cannot open for reading: No such file or directory");

  r = cli("gen-trace --mix " + config("mixes/llava-instruct.json") + " --batches 2 -o " +
          quoted(dir / "no-such-dir" / "t.jsonl"));
  CHECK(r.exit_code == 4);
  CHECK(first_line(r.err).find("no-such-dir/t.jsonl: cannot create a temporary file beside it") !=
        std::string::npos);
}

TEST_CASE("pipeweaver cli: a small mix gives the golden trace", "[golden]") {
  // Pins the generator, the distributions and the writer on every platform. When a change
  // is meant, regenerate: pipeweaver-cli gen-trace --mix tests/pipeweaver/data/small-mix.json
  //   --batches 6 --seed 5 -o tests/pipeweaver/golden/gen-trace-small-seed5.jsonl
  testing::TempDir dir;
  const auto out = dir / "t.jsonl";
  const auto r =
      cli("gen-trace -q --mix " + data("data/small-mix.json") + " --batches 6 --seed 5 -o " + quoted(out));
  REQUIRE(r.exit_code == 0);
  CHECK(common::read_file(out.string()) == common::read_file(data("golden/gen-trace-small-seed5.jsonl")));
}
