// pipeweaver-cli search and schedule through the built executable: --json, the schedules
// file (each line re-simulates to the step time the search reported), the report files,
// the baseline writer, and bad input.
#include <filesystem>
#include <fstream>

#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "spec_test_util.hpp"

using pwtest::config;

namespace {

const std::string kCli = PIPEWEAVER_CLI;

std::string quoted(const std::string& s) { return testing::shell_quote(s); }

testing::CommandResult cli(const std::string& args) { return testing::run_cli(kCli, args); }

std::string make_trace(const testing::TempDir& dir, const std::string& mix, const std::string& model, int batches) {
  const std::string trace = (dir / (mix + ".jsonl")).string();
  const auto r = cli("gen-trace -q --mix " + config("mixes/" + mix + ".json") + " --model " + config("models/" + model + ".json") +
                     " --batches " + std::to_string(batches) + " --seed 3 -o " + quoted(trace));
  REQUIRE(r.exit_code == 0);
  return trace;
}

std::string inputs(const std::string& model, const std::string& trace) {
  return " --model " + config("models/" + model + ".json") + " --cluster " + config("clusters/h100-80g-8x.json") +
         " --trace " + quoted(trace);
}

}  // namespace

TEST_CASE("pipeweaver cli: search --json summarises every method and beats or ties the best baseline", "[unit]") {
  testing::TempDir dir;
  const std::string trace = make_trace(dir, "video-heavy", "llava-7b", 3);
  const std::string out = (dir / "s.jsonl").string();
  const auto r = cli("search" + inputs("llava-7b", trace) + " --json --threads 2 -o " + quoted(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json j = common::Json::parse(r.out);
  CHECK(j.at("batches") == 3);
  for (const char* m : {"pipeweaver", "gpipe", "1f1b", "interleaved-1f1b", "zb-h1"})
    CHECK(j.at("methods").at(m).at("mean_step_ms").get<double>() > 0);
  CHECK(j.at("speedup_vs_best_baseline").at("min").get<double>() >= 1.0);
  CHECK(j.at("speedup_vs_best_baseline").at("max").get<double>() >= j.at("speedup_vs_best_baseline").at("mean").get<double>());
  CHECK(j.at("search_ms").at("max").get<double>() >= j.at("search_ms").at("p50").get<double>());
  CHECK(j.at("candidates_per_s").get<double>() > 0);
  CHECK(j.at("reuse_hit_rate").get<double>() > 0.5);

  // Every chosen schedule, re-played by simulate, takes the step time the search reported.
  std::ifstream in(out);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const common::Json l = common::Json::parse(line);
    std::string name = "b";  // appended: g++ 12 -O3 warns falsely on "b" + std::string
    name.append(std::to_string(n)).append(".json");
    const std::string sched = (dir / name).string();
    common::write_file_atomic(sched, l.at("schedule").dump());
    const auto s = cli("simulate" + inputs("llava-7b", trace) + " --batch " + std::to_string(l.at("batch").get<int>()) +
                       " --schedule " + quoted(sched) + " --json");
    INFO(s.err);
    REQUIRE(s.exit_code == 0);
    CHECK(common::Json::parse(s.out).at("step_ms").get<double>() == l.at("step_ms").get<double>());
    ++n;
  }
  CHECK(n == 3);
}

TEST_CASE("pipeweaver cli: schedules that recompute some chunks re-play to the reported step time", "[unit]") {
  // The ~37B model on video: activations do not fit without recomputation.
  testing::TempDir dir;
  const std::string trace = make_trace(dir, "video-heavy", "lmm-37b", 2);
  const std::string out = (dir / "s.jsonl").string();
  const std::string in = " --model " + config("models/lmm-37b.json") + " --cluster " +
                         config("clusters/h100-80g-64x-pp8.json") + " --zero1 --trace " + quoted(trace);
  const auto r = cli("search" + in + " --json --threads 2 -o " + quoted(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json j = common::Json::parse(r.out);
  CHECK(j.at("methods").at("pipeweaver").at("batches_over_memory") == 0);
  CHECK(j.at("speedup_bound").at("mean").get<double>() >= j.at("speedup_vs_best_baseline").at("mean").get<double>());
  std::ifstream lines(out);
  std::string line;
  int recomputing = 0;
  while (std::getline(lines, line)) {
    const common::Json l = common::Json::parse(line);
    CHECK(l.at("balanced_bound_ms").get<double>() <= l.at("step_ms").get<double>());
    if (l.at("recompute") == "none") continue;
    ++recomputing;
    int flagged = 0;
    for (const auto& c : l.at("schedule").at("chunks")) flagged += c.value("recompute", false) ? 1 : 0;
    CHECK(flagged > 0);
    const std::string sched = (dir / "r.json").string();
    common::write_file_atomic(sched, l.at("schedule").dump());
    const auto s = cli("simulate" + in + " --batch " + std::to_string(l.at("batch").get<int>()) + " --schedule " +
                       quoted(sched) + " --json");
    INFO(s.err);
    REQUIRE(s.exit_code == 0);
    CHECK(common::Json::parse(s.out).at("step_ms").get<double>() == l.at("step_ms").get<double>());
    CHECK_FALSE(common::Json::parse(s.out).at("exceeds_memory").get<bool>());
  }
  CHECK(recomputing > 0);
}

TEST_CASE("pipeweaver cli: search --report writes an SVG timeline and Chrome traces", "[unit]") {
  testing::TempDir dir;
  const std::string trace = make_trace(dir, "llava-instruct", "llava-7b", 2);
  const std::string rep = (dir / "report").string();
  const auto r = cli("search" + inputs("llava-7b", trace) + " --report " + quoted(rep) + " --report-batches 1");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("speed-up of pipeweaver over the best baseline") != std::string::npos);
  REQUIRE(std::filesystem::exists(dir / "report" / "batch-1.svg"));
  CHECK_FALSE(std::filesystem::exists(dir / "report" / "batch-0.svg"));
  const std::string svg = common::read_file((dir / "report" / "batch-1.svg").string());
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find("PipeWeaver") != std::string::npos);
  CHECK(std::filesystem::exists(dir / "report" / "batch-1-pipeweaver.trace.json"));
  const common::Json t = common::Json::parse(common::read_file((dir / "report" / "batch-1-pipeweaver.trace.json").string()));
  CHECK(t.at("traceEvents").size() > 10);
}

TEST_CASE("pipeweaver cli: schedule writes the baselines search compares against", "[unit]") {
  testing::TempDir dir;
  const std::string trace = make_trace(dir, "llava-instruct", "llava-7b", 2);
  for (const char* kind : {"gpipe", "1f1b", "interleaved-1f1b", "zb-h1"}) {
    const std::string s = (dir / (std::string(kind) + ".json")).string();
    const auto r = cli(std::string("schedule --kind ") + kind + inputs("llava-7b", trace) + " --batch 1 -o " + quoted(s));
    INFO(kind << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    const auto sim = cli("simulate" + inputs("llava-7b", trace) + " --batch 1 --schedule " + quoted(s) + " --json");
    REQUIRE(sim.exit_code == 0);
    CHECK(common::Json::parse(sim.out).at("step_ms").get<double>() > 0);
  }
  const auto bad = cli("schedule --kind 1f1b --chunks 2" + inputs("llava-7b", trace) + " -o " + quoted((dir / "x.json").string()));
  CHECK(bad.exit_code == 2);
  CHECK(bad.err.find("runs one chunk per rank") != std::string::npos);
  const auto odd = cli("schedule --kind interleaved-1f1b --microbatches 12" + inputs("llava-7b", trace) + " -o " +
                       quoted((dir / "x.json").string()));
  CHECK(odd.exit_code == 2);
  CHECK(odd.err.find("multiple of the 8 ranks") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(dir / "x.json"));
}

TEST_CASE("pipeweaver cli: search rejects bad input with one line and writes nothing", "[unit]") {
  testing::TempDir dir;
  const std::string bad_trace = (dir / "bad.jsonl").string();
  testing::write_text(bad_trace, "{\"version\": 1, \"batch\": 0, \"samples\": [{\"text_tokens\": 5}]}\n[1, 2]\n");
  const std::string out = (dir / "s.jsonl").string();
  const auto r = cli("search" + inputs("llava-7b", bad_trace) + " -o " + quoted(out));
  CHECK(r.exit_code == 3);
  CHECK(r.err.find("bad.jsonl:2") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
  const auto missing = cli("search" + inputs("llava-7b", (dir / "none.jsonl").string()) + " -o " + quoted(out));
  CHECK(missing.exit_code != 0);
  CHECK(missing.err.find("none.jsonl") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
}
