// PyTorch CSV export and its validator, and `pipeweaver-cli export` through the built
// executable: formats, exit codes, one-line errors, nothing written on failure.
#include <cstdlib>
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

std::string first_line_of(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// The letter PyTorch's CSV uses for a pass (written out here, not taken from the exporter).
char letter(schedule::Op op) {
  switch (op) {
    case schedule::Op::F:
      return 'F';
    case schedule::Op::B:
      return 'B';
    case schedule::Op::I:
      return 'I';
    case schedule::Op::W:
      return 'W';
  }
  return '?';
}

struct Cell {
  std::int32_t stage = -1;
  char op = '?';
  std::int32_t microbatch = -1;
};

// The cells of one CSV row read as "{stage}{F|B|I|W}{microbatch}"; a malformed cell is
// returned with op '?'.
std::vector<Cell> cells_of(const std::string& row) {
  std::vector<Cell> out;
  std::size_t b = 0;
  while (b <= row.size()) {
    const std::size_t e = std::min(row.find(',', b), row.size());
    const std::string cell = row.substr(b, e - b);
    Cell c;
    const std::size_t op = cell.find_first_of("FBIW");
    if (op != std::string::npos && op > 0 && op + 1 < cell.size() &&
        cell.find_first_not_of("0123456789") == op &&
        cell.find_first_not_of("0123456789", op + 1) == std::string::npos) {
      c.stage = std::stoi(cell.substr(0, op));
      c.op = cell[op];
      c.microbatch = std::stoi(cell.substr(op + 1));
    }
    out.push_back(c);
    b = e + 1;
  }
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

TEST_CASE("pipeweaver PyTorch CSV of every baseline generator passes the loader's checks", "[unit]") {
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
          // Each cell read back here (digits, one of F B I W, digits) is the rank's action.
          for (std::int32_t r = 0; r < p; ++r) {
            const auto& actions = s.rank_actions[static_cast<std::size_t>(r)];
            const std::vector<Cell> cells = cells_of(rows[static_cast<std::size_t>(r)]);
            REQUIRE(cells.size() == actions.size());
            for (std::size_t i = 0; i < cells.size(); ++i) {
              CHECK(cells[i].stage == actions[i].stage);
              CHECK(cells[i].op == letter(actions[i].op));
              CHECK(cells[i].microbatch == actions[i].microbatch);
            }
          }
        }
}

TEST_CASE("pipeweaver PyTorch CSV text of small 1F1B and ZB-H1 schedules", "[unit]") {
  const auto chunks = schedule::uniform_chunks("llm", 2, 1);
  CHECK(to_pytorch_csv(schedule::one_f_one_b(2, 2, chunks)) == "0F0,0F1,0B0,0B1\n1F0,1B0,1F1,1B1\n");
  CHECK(to_pytorch_csv(schedule::zb_h1(2, 2, chunks)) == "0F0,0F1,0I0,0W0,0I1,0W1\n1F0,1I0,1F1,1I1,1W0,1W1\n");
}

TEST_CASE("pipeweaver PyTorch CSV rows of each generator, written out by hand", "[unit]") {
  // Rows derived from each schedule's definition, not from the exporter.
  SECTION("gpipe, 2 ranks, 3 microbatches: all forwards, then the backwards in reverse") {
    CHECK(to_pytorch_csv(schedule::gpipe(2, 3, schedule::uniform_chunks("llm", 2, 1))) ==
          "0F0,0F1,0F2,0B2,0B1,0B0\n"
          "1F0,1F1,1F2,1B2,1B1,1B0\n");
  }
  SECTION("1f1b, 3 ranks, 4 microbatches: p - r - 1 warm-up forwards, F B pairs, the drain") {
    CHECK(to_pytorch_csv(schedule::one_f_one_b(3, 4, schedule::uniform_chunks("llm", 3, 1))) ==
          "0F0,0F1,0F2,0B0,0F3,0B1,0B2,0B3\n"
          "1F0,1F1,1B0,1F2,1B1,1F3,1B2,1B3\n"
          "2F0,2B0,2F1,2B1,2F2,2B2,2F3,2B3\n");
  }
  SECTION("zb-h1, 3 ranks, 3 microbatches: 1F1B's order with B = I W, rank r's W deferred by r") {
    CHECK(to_pytorch_csv(schedule::zb_h1(3, 3, schedule::uniform_chunks("llm", 3, 1))) ==
          "0F0,0F1,0F2,0I0,0W0,0I1,0W1,0I2,0W2\n"
          "1F0,1F1,1I0,1F2,1I1,1W0,1I2,1W1,1W2\n"
          "2F0,2I0,2F1,2I1,2F2,2I2,2W0,2W1,2W2\n");
  }
  SECTION("interleaved-1f1b, 2 ranks x 2 chunks, 4 microbatches (Megatron-LM's order)") {
    // Rank r holds stages r and r + 2. Forwards go in groups of p microbatches per chunk
    // (chunk 0: 0, 1; chunk 1: 0, 1; chunk 0: 2, 3; ...), backwards likewise from the last
    // chunk; rank r warms up with 2 (p - r - 1) + (v - 1) p forwards: 4 on rank 0, 2 on rank 1.
    CHECK(to_pytorch_csv(schedule::interleaved_1f1b(2, 4, schedule::uniform_chunks("llm", 4, 1))) ==
          "0F0,0F1,2F0,2F1,0F2,2B0,0F3,2B1,2F2,0B0,2F3,0B1,2B2,2B3,0B2,0B3\n"
          "1F0,1F1,3F0,3B0,3F1,3B1,1F2,1B0,1F3,1B1,3F2,3B2,3F3,3B3,1B2,1B3\n");
  }
}

TEST_CASE("pipeweaver PyTorch CSV of every baseline generator loads in PyTorch itself", "[unit]") {
  // PyTorch's own loader (tests/pipeweaver/pytorch_csv_check.py: _Action.from_str,
  // _validate_schedule, _add_send_recv, _simulate_comms_compute) on every generator's CSV,
  // with python3 (or $PWPI_PYTHON) where torch is importable; skipped, saying why, elsewhere.
  const char* env = std::getenv("PWPI_PYTHON");
  const std::string python = env && *env ? env : "python3";
  const std::string script =
      (testing::source_dir() / "tests" / "pipeweaver" / "pytorch_csv_check.py").string();
  testing::TempDir dir;
  struct Case {
    std::string file;
    std::int32_t m;
    schedule::Schedule s;
  };
  std::vector<Case> cases;
  std::string args;
  for (const schedule::GeneratorInfo& g : schedule::generator_registry())
    for (std::int32_t p : {1, 2, 3, 4})
      for (std::int32_t v : {1, 2, 3})
        for (std::int32_t m : {1, 2, 3, 4, 8}) {
          if (g.interleaved ? (v == 1 || m % p != 0) : v != 1) continue;
          Case c{(dir / (std::string(g.name) + "-" + std::to_string(p) + "-" + std::to_string(v) + "-" +
                         std::to_string(m) + ".csv"))
                     .string(),
                 m, g.make(p, m, schedule::uniform_chunks("llm", p * v, 1))};
          testing::write_text(c.file, to_pytorch_csv(c.s));
          args += " " + testing::shell_quote(c.file) + " " + std::to_string(m);
          cases.push_back(std::move(c));
        }
  // A control PyTorch must refuse: each rank waits for the other's first microbatch.
  const std::string stuck = (dir / "stuck.csv").string();
  testing::write_text(stuck, "0F0,0B0,0F1,0B1\n1F1,1B1,1F0,1B0\n");
  args += " " + testing::shell_quote(stuck) + " 2";
  const auto r =
      testing::run_command(testing::shell_quote(python) + " " + testing::shell_quote(script) + args);
  if (r.exit_code == 77 || r.exit_code == 127)
    PWPI_SKIP("PyTorch's CSV loader not run: " +
              (r.exit_code == 127 ? python + " not found" : first_line_of(r.out)));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json j = common::Json::parse(r.out);
  CHECK(j.at(stuck).contains("error"));
  for (const Case& c : cases) {
    INFO(c.file);
    const common::Json& got = j.at(c.file);
    REQUIRE_FALSE(got.contains("error"));
    REQUIRE(got.at("ranks").size() == c.s.rank_actions.size());
    for (std::size_t rank = 0; rank < c.s.rank_actions.size(); ++rank) {
      const auto& want = c.s.rank_actions[rank];
      const common::Json& row = got.at("ranks")[rank];
      REQUIRE(row.size() == want.size());
      for (std::size_t i = 0; i < want.size(); ++i) {
        CHECK(row[i][0].get<std::int32_t>() == want[i].stage);
        CHECK(row[i][1].get<std::string>() == std::string(1, letter(want[i].op)));
        CHECK(row[i][2].get<std::int32_t>() == want[i].microbatch);
      }
    }
  }
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
