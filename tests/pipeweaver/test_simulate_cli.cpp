// pipeweaver-cli simulate and profile through the built executable: exit codes, the
// one-line errors, --json, the Chrome trace file.
#include <filesystem>

#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "spec_test_util.hpp"

using pwtest::config;

namespace {

const std::string kCli = PIPEWEAVER_CLI;

std::string quoted(const std::string& s) { return testing::shell_quote(s); }

testing::CommandResult cli(const std::string& args) { return testing::run_cli(kCli, args); }

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// A 10-batch llava trace in `dir`, and the common simulate arguments.
std::string setup(const testing::TempDir& dir) {
  const std::string trace = (dir / "t.jsonl").string();
  const auto r = cli("gen-trace -q --mix " + config("mixes/llava-instruct.json") + " --model " +
                     config("models/llava-7b.json") + " --batches 10 --seed 2 -o " + quoted(trace));
  REQUIRE(r.exit_code == 0);
  return "simulate --model " + config("models/llava-7b.json") + " --cluster " + config("clusters/h100-80g-8x.json") +
         " --trace " + quoted(trace);
}

}  // namespace

TEST_CASE("pipeweaver cli: simulate --json reports step time, bubble and ranks", "[unit]") {
  testing::TempDir dir;
  const std::string base = setup(dir);
  const auto r = cli(base + " --schedule Interleaved-1F1B --chunks-per-rank 2 --microbatches 16 --batch 4 --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json j = common::Json::parse(r.out);
  CHECK(j.at("step_ms").get<double>() > 0);
  CHECK(j.at("bubble_ratio").get<double>() > 0);
  CHECK(j.at("bubble_ratio").get<double>() < 1);
  REQUIRE(j.at("ranks").size() == 8);
  for (const auto& rank : j.at("ranks")) {
    CHECK(rank.at("busy_ms").get<double>() > 0);
    CHECK(rank.at("peak_mem_bytes").get<std::int64_t>() > rank.at("static_bytes").get<std::int64_t>());
  }
  CHECK(j.at("schedule").at("stages") == 16);
  CHECK(j.at("schedule").at("microbatches") == 16);
  // Reuse off gives the same numbers.
  const auto off = cli(base + " --schedule interleaved-1f1b --chunks-per-rank 2 --microbatches 16 --batch 4 --json --no-reuse");
  REQUIRE(off.exit_code == 0);
  const common::Json k = common::Json::parse(off.out);
  CHECK(k.at("step_ns") == j.at("step_ns"));
  CHECK(k.at("ranks") == j.at("ranks"));
}

TEST_CASE("pipeweaver cli: simulate writes a Chrome trace and a human summary", "[unit]") {
  testing::TempDir dir;
  const std::string base = setup(dir);
  const auto out = dir / "trace.json";
  const auto r = cli(base + " --schedule 1f1b --chrome-trace " + quoted(out.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("step time") != std::string::npos);
  CHECK(r.out.find("bubble ratio") != std::string::npos);
  CHECK(r.out.find("% hits") != std::string::npos);
  const common::Json t = common::Json::parse(common::read_file(out.string()));
  CHECK(t.at("traceEvents").size() > 100);
}

TEST_CASE("pipeweaver cli: simulate rejects bad schedules and batches with clear errors", "[unit]") {
  testing::TempDir dir;
  const std::string base = setup(dir);

  auto r = cli(base + " --schedule 1f1b --batch 500");
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).find("error: --batch 500: ") == 0);
  CHECK(first_line(r.err).find("has 10 batches") != std::string::npos);

  r = cli(base + " --schedule zigzag");
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).find("gpipe, 1f1b, interleaved-1f1b") != std::string::npos);

  r = cli(base + " --schedule gpipe --chunks-per-rank 2");
  CHECK(r.exit_code == 2);

  r = cli(base + " --schedule interleaved-1f1b --microbatches 12");
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).find("multiple of the 8 ranks") != std::string::npos);

  // A schedule file naming a module the model lacks.
  const std::string sched = (dir / "schedule.json").string();
  common::Json s = {{"version", 1}, {"ranks", 8}, {"microbatches", 1}, {"chunks", common::Json::array()},
                    {"actions", common::Json::array()}};
  for (int i = 0; i < 8; ++i) {
    s["chunks"].push_back({{"module", i == 0 ? "vision" : (i == 3 ? "vison" : "llm")},
                           {"layers", {i == 0 ? 0 : (i - 1) * 4, i == 0 ? 24 : (i == 7 ? 32 : i * 4)}},
                           {"rank", i}});
    s["actions"].push_back({std::to_string(i) + "F0", std::to_string(i) + "B0"});
  }
  testing::write_text(sched, s.dump());
  r = cli(base + " --schedule " + quoted(sched));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err) == "error: " + sched + ": /chunks/3/module: no module named 'vison' in llava-7b.json");

  s["chunks"][3]["module"] = "llm";
  testing::write_text(sched, s.dump());
  r = cli(base + " --schedule " + quoted(sched) + " --json");
  INFO(r.err);
  CHECK(r.exit_code == 0);  // now valid: 1 microbatch holding the whole batch

  s["chunks"][3]["layers"] = {9, 12};
  testing::write_text(sched, s.dump());
  r = cli(base + " --schedule " + quoted(sched));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err).find("/chunks/3/layers: expected the layers of 'llm' to continue at layer 8") != std::string::npos);

  s["chunks"][3]["layers"] = {8, 12};
  s["microbatch_samples"] = {{0, 1, 2, 500}};
  testing::write_text(sched, s.dump());
  r = cli(base + " --schedule " + quoted(sched));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err).find("/microbatch_samples/0/3: sample 500 does not exist") != std::string::npos);

  testing::write_text(sched, "{\"version\": 1, ");
  r = cli(base + " --schedule " + quoted(sched));
  CHECK(r.exit_code == 3);

  r = cli(base + " --schedule " + quoted((dir / "missing.json").string()));
  CHECK(r.exit_code == 4);
}

TEST_CASE("pipeweaver cli: profile --quick writes a device profile that simulate uses", "[slow]") {
  testing::TempDir dir;
  const std::string base = setup(dir);
  const auto prof = dir / "device.json";
  const auto r = cli("profile --quick -o " + quoted(prof.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json p = common::Json::parse(common::read_file(prof.string()));
  CHECK(p.at("version") == 1);
  CHECK(p.at("device").at("type") == "cpu");
  const auto s = cli(base + " --schedule 1f1b --json --device-profile " + quoted(prof.string()));
  INFO(s.err);
  REQUIRE(s.exit_code == 0);
  CHECK(common::Json::parse(s.out).at("device_profile").at("type") == "cpu");
}
