// PyTorch CSV export and its validator, and `pipeweaver-cli export` through the built
// executable: formats, exit codes, one-line errors, nothing written on failure.
#include <filesystem>

#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "export/pytorch_csv.hpp"
#include "schedule/generators.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver;
using exporting::to_pytorch_csv;
using exporting::validate_pytorch_csv;
using pwtest::config;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t b = 0;
  for (std::size_t e; (e = text.find('\n', b)) != std::string::npos; b = e + 1) out.push_back(text.substr(b, e - b));
  return out;
}

// Two stages both on rank 0: valid here, but rank 1 would have an empty row.
schedule::Schedule idle_rank_schedule() {
  schedule::Schedule s;
  s.n_ranks = 2;
  s.n_microbatches = 1;
  s.chunks = {{"llm", 0, 4, 0}, {"llm", 4, 8, 0}};
  s.rank_actions = {{{0, schedule::Op::F, 0}, {1, schedule::Op::F, 0}, {1, schedule::Op::B, 0}, {0, schedule::Op::B, 0}}, {}};
  return s;
}

}  // namespace

TEST_CASE("pipeweaver PyTorch CSV of every baseline generator passes PyTorch's checks", "[unit]") {
  for (const schedule::GeneratorInfo& g : schedule::generator_registry())
    for (std::int32_t p : {1, 2, 3, 4, 8})
      for (std::int32_t v : {1, 2, 3})
        for (std::int32_t m : {1, 2, 3, 8, 16}) {
          if (g.interleaved ? (v == 1 || m % p != 0) : v != 1) continue;
          INFO(g.name << " p=" << p << " v=" << v << " m=" << m);
          const auto s = g.make(p, m, schedule::uniform_chunks("llm", p * v, 1));
          const std::string csv = to_pytorch_csv(s);
          CHECK(validate_pytorch_csv(csv, m).empty());
          const auto rows = lines_of(csv);
          REQUIRE(rows.size() == static_cast<std::size_t>(p));
          for (std::int32_t r = 0; r < p; ++r) {
            std::string expected;
            for (const auto& a : s.rank_actions[static_cast<std::size_t>(r)]) {
              if (!expected.empty()) expected += ',';
              expected += schedule::to_string(a);
            }
            CHECK(rows[static_cast<std::size_t>(r)] == expected);
          }
        }
}

TEST_CASE("pipeweaver PyTorch CSV text of small 1F1B and ZB-H1 schedules", "[unit]") {
  const auto chunks = schedule::uniform_chunks("llm", 2, 1);
  CHECK(to_pytorch_csv(schedule::one_f_one_b(2, 2, chunks)) == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  CHECK(to_pytorch_csv(schedule::zb_h1(2, 2, chunks)) == "0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1F1,1I1,1W0,1W1\n");
}

TEST_CASE("pipeweaver PyTorch CSV export refuses a rank without actions", "[unit]") {
  const auto s = idle_rank_schedule();
  REQUIRE_FALSE(schedule::find_problem(s).has_value());
  CHECK_THROWS_AS(to_pytorch_csv(s), common::UsageError);
  CHECK(pwtest::error_of([&] { to_pytorch_csv(s); }).find("rank 1 runs no action") != std::string::npos);
}

TEST_CASE("pipeweaver PyTorch CSV validator accepts what PyTorch loads and rejects the rest", "[unit]") {
  // Idle cells, CRLF line ends, spaces and no final line break load in PyTorch.
  CHECK(validate_pytorch_csv("0F0,,0B0\r\n,1F0, 1B0\r\n", 1).empty());
  CHECK(validate_pytorch_csv("0F0,0I0,0W0\n1F0,1B0", 1).empty());
  // Two stages on one rank, adjacent (the V-schedule case): forwarded locally, no receive.
  CHECK(validate_pytorch_csv("0F0,3F0,3B0,0B0\n1F0,2F0,2B0,1B0\n", 1).empty());

  struct Bad {
    const char* csv;
    std::int32_t m;
    const char* message;
  };
  const Bad bad[] = {
      {"", 1, "no rows"},
      {"0F0,0B0\n\n1F0,1B0\n", 1, "row 1: no action"},
      {"0F0,1F0,0B0\n1B0\n", 1, "stage 1 also runs on rank 0"},
      {"0F0,0W0,0I0\n", 1, "runs before its input-gradient pass"},
      {"0B0,0F0\n", 1, "runs before its forward"},
      {"0F0,0F0,0B0\n", 1, "runs twice"},
      {"0F0,0B0\n", 2, "stage 0: 1 forwards, expected 2"},
      {"0F0,0I0\n", 1, "I and W counts differ"},
      {"0F0,0F1,0I0,0W0,0I1,0W1,0B1\n", 2, "expected 2 backwards (B + (I + W) / 2), got B=1, I=2, W=2"},
      {"0F0,0SEND_F0,0B0\n", 1, "communication action"},
      {"0F0,0X0\n", 1, "expected an action such as 2F0"},
      {"0F0,0F\n", 1, "expected an action such as 2F0"},
      {"0F0,0B0,0F5\n", 2, "microbatch 5 does not exist"},
      {"1F0,1B0\n", 1, "stage 0: 0 forwards"},
      // Rank 0 waits for 1B0, which rank 1 runs only after 1F1, which needs 0F1 from rank 0.
      {"0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0\n", 2, "waits forever"},
  };
  for (const Bad& b : bad) {
    INFO(b.csv);
    const std::string got = validate_pytorch_csv(b.csv, b.m);
    CHECK(got.find(b.message) != std::string::npos);
    CHECK(got.find('\n') == std::string::npos);
  }
}

// --- the command -----------------------------------------------------------------------

namespace {

const std::string kCli = PIPEWEAVER_CLI;

testing::CommandResult cli(const std::string& args) { return testing::run_cli(kCli, args); }
std::string q(const std::filesystem::path& p) { return testing::shell_quote(p.string()); }
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

const char* kTwoRank =
    R"({"version": 1, "ranks": 2, "microbatches": 2,
        "chunks": [{"module": "llm", "layers": [0, 16], "rank": 0}, {"module": "llm", "layers": [16, 32], "rank": 1}],
        "actions": [["0F0", "0F1", "0B0", "0B1"], ["1F0", "1B0", "1F1", "1B1"]]})";

// A llava trace and the --model/--cluster/--trace arguments (8 pipeline ranks).
std::string inputs(const testing::TempDir& dir) {
  const auto trace = dir / "t.jsonl";
  const auto r = cli("gen-trace -q --mix " + config("mixes/llava-instruct.json") + " --model " +
                     config("models/llava-7b.json") + " --batches 3 --seed 4 -o " + q(trace));
  REQUIRE(r.exit_code == 0);
  return " --model " + config("models/llava-7b.json") + " --cluster " + config("clusters/h100-80g-8x.json") +
         " --trace " + q(trace);
}

}  // namespace

TEST_CASE("pipeweaver cli: export --format pytorch-csv writes a schedule file's rows", "[unit]") {
  testing::TempDir dir;
  testing::write_text(dir / "s.json", kTwoRank);
  const auto out = dir / "s.csv";
  auto r = cli("export --schedule " + q(dir / "s.json") + " --format pytorch-csv -o " + q(out));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(common::read_file(out.string()) == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  r = cli("export --schedule " + q(dir / "s.json") + " --format pytorch-csv -o -");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
}

TEST_CASE("pipeweaver cli: export of generated schedules: pytorch-csv, chrome-trace, svg", "[unit]") {
  testing::TempDir dir;
  const std::string in = inputs(dir);
  auto r = cli("export --schedule zb-h1 --format pytorch-csv --microbatches 16 -o -" + in);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(lines_of(r.out).size() == 8);
  CHECK(validate_pytorch_csv(r.out, 16).empty());
  CHECK(r.out.find("7I15") != std::string::npos);

  const auto trace = dir / "step.json";
  r = cli("export --schedule 1f1b --format chrome-trace --batch 2 -o " + q(trace) + in);
  REQUIRE(r.exit_code == 0);
  const common::Json t = common::Json::parse(common::read_file(trace.string()));
  CHECK(t.at("traceEvents").size() > 100);

  const auto svg = dir / "step.svg";
  r = cli("export --format svg --schedule 1f1b --schedule interleaved-1f1b --microbatches 16 -o " + q(svg) + in);
  REQUIRE(r.exit_code == 0);
  const std::string doc = common::read_file(svg.string());
  CHECK(doc.rfind("<?xml", 0) == 0);
  CHECK(doc.find("1f1b (1 chunk per rank)") != std::string::npos);
  CHECK(doc.find("interleaved-1f1b (2 chunks per rank)") != std::string::npos);
}

TEST_CASE("pipeweaver cli: simulate runs the zb-h1 generator", "[unit]") {
  testing::TempDir dir;
  const auto r = cli("simulate --schedule ZB-H1 --microbatches 16 --json" + inputs(dir));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json j = common::Json::parse(r.out);
  CHECK(j.at("schedule").at("name").get<std::string>().find("zb-h1") == 0);
  CHECK(j.at("schedule").at("actions") == 3 * 8 * 16);
  CHECK(j.at("step_ms").get<double>() > 0);
}

TEST_CASE("pipeweaver cli: export errors are one line, with the exit code, and write nothing", "[unit]") {
  testing::TempDir dir;
  testing::write_text(dir / "s.json", kTwoRank);
  const auto out = dir / "out";
  auto no_output = [&] { return !std::filesystem::exists(out); };

  auto r = cli("export --schedule " + q(dir / "s.json") + " --format xml -o " + q(out));
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err) == "error: --format xml: unknown format");
  CHECK(no_output());

  r = cli("export --schedule " + q(dir / "s.json") + " --format chrome-trace -o " + q(out));
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err) ==
        "error: --format chrome-trace needs --model, --cluster and --trace; missing --model, --cluster, --trace");
  CHECK(no_output());

  r = cli("export --schedule zb-h1 --format pytorch-csv -o " + q(out));
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).find("error: a generated schedule (--schedule zb-h1) needs --model") == 0);
  CHECK(no_output());

  r = cli("export --schedule " + q(dir / "missing.json") + " --format pytorch-csv -o " + q(out));
  CHECK(r.exit_code == 4);
  CHECK(first_line(r.err).find("missing.json") != std::string::npos);
  CHECK(no_output());

  testing::write_text(dir / "bad.json", R"({"version": 1, "ranks": 2})");
  r = cli("export --schedule " + q(dir / "bad.json") + " --format pytorch-csv -o " + q(out));
  CHECK(r.exit_code == 3);
  CHECK(first_line(r.err).find("bad.json") != std::string::npos);
  CHECK(no_output());

  r = cli("export --schedule " + q(dir / "s.json") + " --schedule " + q(dir / "s.json") + " --format pytorch-csv -o " + q(out));
  CHECK(r.exit_code == 2);
  CHECK(no_output());

  // Inexpressible in PyTorch: rank 1 holds no stage. An existing output stays as it was.
  testing::write_text(dir / "idle.json", schedule::to_json(idle_rank_schedule()).dump());
  testing::write_text(out, "old");
  r = cli("export --schedule " + q(dir / "idle.json") + " --format pytorch-csv -o " + q(out));
  CHECK(r.exit_code == 2);
  CHECK(first_line(r.err).find("error: cannot export to PyTorch: rank 1 runs no action") == 0);
  CHECK(common::read_file(out.string()) == "old");
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 4);  // s.json, bad.json, idle.json, out: no temporary left behind
}
