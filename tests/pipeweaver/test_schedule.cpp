#include "schedule/schedule.hpp"

#include "test_support.hpp"

using namespace pipeweaver::schedule;

namespace {

common::Where here() { return common::Where("sched.json"); }

// p ranks, one chunk per rank, GPipe order: all forwards then all backwards.
Schedule gpipe(int p, int m) {
  Schedule s;
  s.n_ranks = p;
  s.n_microbatches = m;
  for (int r = 0; r < p; ++r) s.chunks.push_back({"llm", r * 4, r * 4 + 4, r});
  s.rank_actions.resize(static_cast<std::size_t>(p));
  for (int r = 0; r < p; ++r) {
    for (int i = 0; i < m; ++i) s.rank_actions[r].push_back({r, Op::F, i});
    for (int i = 0; i < m; ++i) s.rank_actions[r].push_back({r, Op::B, i});
  }
  return s;
}

std::vector<Action> parse_list(std::initializer_list<const char*> items) {
  std::vector<Action> out;
  for (auto t : items) out.push_back(parse_action(t, here()));
  return out;
}

std::string problem_of(const Schedule& s) {
  auto p = find_problem(s);
  return p ? p->pointer + ": " + p->message : "(none)";
}

}  // namespace

TEST_CASE("pipeweaver actions print and parse as PyTorch-style strings", "[unit]") {
  for (const char* text : {"2F0", "1B3", "0I1", "0W1", "15F127", "0F0"}) {
    Action a = parse_action(text, here());
    CHECK(to_string(a) == text);
  }
  Action a = parse_action("12W7", here());
  CHECK(a.stage == 12);
  CHECK(a.op == Op::W);
  CHECK(a.microbatch == 7);
  for (const char* bad : {"", "F0", "2F", "2X0", "-1F0", "2F-1", "2F0x", "2 F0", "+2F0", "2f0", "99999999999F0"}) {
    INFO(bad);
    try {
      parse_action(bad, here());
      FAIL("accepted");
    } catch (const common::InputError& e) {
      CHECK(std::string(e.what()) ==
            "sched.json: expected an action such as 2F0 (stage, F/B/I/W, microbatch), got \"" + std::string(bad) + "\"");
    }
  }
}

TEST_CASE("pipeweaver a correct schedule has no problem and survives a JSON round trip", "[unit]") {
  Schedule s = gpipe(4, 6);
  s.microbatch_samples = {{0, 1}, {2}, {3}, {4}, {5, 6}, {7}};
  CHECK(problem_of(s) == "(none)");
  common::Json j = to_json(s);
  CHECK(j["actions"][1][0] == "1F0");
  CHECK(j["chunks"][2]["layers"] == common::Json::array({8, 12}));
  Schedule back = schedule_from_json(common::json_root(j, "sched.json"));
  CHECK(back == s);
  CHECK_FALSE(j["chunks"][1].contains("recompute"));  // written only when set
  s.chunks[1].recompute = true;
  j = to_json(s);
  CHECK(j["chunks"][1]["recompute"] == true);
  CHECK(schedule_from_json(common::json_root(j, "sched.json")) == s);
}

TEST_CASE("pipeweaver zero-bubble split backward validates", "[unit]") {
  Schedule s;
  s.n_ranks = 2;
  s.n_microbatches = 2;
  s.chunks = {{"vit", 0, 12, 0}, {"llm", 0, 32, 1}};
  s.rank_actions = {parse_list({"0F0", "0F1", "0I0", "0I1", "0W0", "0W1"}),
                    parse_list({"1F0", "1I0", "1F1", "1I1", "1W0", "1W1"})};
  CHECK(problem_of(s) == "(none)");
}

TEST_CASE("pipeweaver structural problems are named with their place", "[unit]") {
  Schedule s = gpipe(2, 2);
  SECTION("unknown stage") {
    s.rank_actions[1][0] = {5, Op::F, 0};
    CHECK(problem_of(s) == "/actions/1/0: 5F0: stage 5 does not exist (the schedule has 2 stages)");
  }
  SECTION("unknown microbatch") {
    s.rank_actions[0][1] = {0, Op::F, 9};
    CHECK(problem_of(s) == "/actions/0/1: 0F9: microbatch 9 does not exist (the schedule has 2 microbatches)");
  }
  SECTION("placement") {
    s.rank_actions[0][0] = {1, Op::F, 0};
    CHECK(problem_of(s) == "/actions/0/0: 1F0 runs on rank 0 but stage 1 is placed on rank 1");
  }
  SECTION("duplicate forward") {
    s.rank_actions[0][1] = {0, Op::F, 0};
    CHECK(problem_of(s) == "/actions/0/1: 0F0: stage 0 microbatch 0 already has its F pass; each pass runs exactly once");
  }
  SECTION("missing backward") {
    s.rank_actions[1].pop_back();
    CHECK(problem_of(s) == "/actions: stage 1 microbatch 1 has no complete backward: expected one B, or one I and one W");
  }
  SECTION("B and I together") {
    s.rank_actions[1].push_back({1, Op::I, 1});
    CHECK(problem_of(s) == "/actions: stage 1 microbatch 1 has both a full backward (B) and a split one (I/W)");
  }
  SECTION("chunk on a missing rank") {
    s.chunks[1].rank = 7;
    CHECK(problem_of(s) == "/chunks/1/rank: rank 7 does not exist (the schedule has 2 ranks)");
  }
  SECTION("action lists per rank") {
    s.rank_actions.pop_back();
    CHECK(problem_of(s) == "/actions: expected one action list per rank (2), got 1");
  }
}

TEST_CASE("pipeweaver a backward before its forward on the same rank is an ordering error", "[unit]") {
  Schedule s = gpipe(2, 2);
  std::swap(s.rank_actions[1][1], s.rank_actions[1][3]);  // 1B1 before 1F1
  CHECK(problem_of(s) == "/actions/1/1: 1B1 on rank 1 comes before 1F1, which it needs");

  Schedule z;
  z.n_ranks = 1;
  z.n_microbatches = 1;
  z.chunks = {{"llm", 0, 2, 0}};
  z.rank_actions = {parse_list({"0F0", "0W0", "0I0"})};
  CHECK(problem_of(z) == "/actions/0/1: 0W0 on rank 0 comes before 0I0, which it needs");
}

TEST_CASE("pipeweaver a deadlock reports the rank x step grid with the stuck actions marked", "[unit]") {
  // Interleaved placement, stage s on rank s % 2. Rank 0 runs stage 2's forward before
  // stage 0's, but stage 2 needs stage 1 (rank 1), which needs stage 0 (rank 0): a cycle.
  Schedule s;
  s.n_ranks = 2;
  s.n_microbatches = 1;
  s.chunks = {{"llm", 0, 2, 0}, {"llm", 2, 4, 1}, {"llm", 4, 6, 0}, {"llm", 6, 8, 1}};
  s.rank_actions = {parse_list({"2F0", "0F0", "2B0", "0B0"}), parse_list({"1F0", "3F0", "3B0", "1B0"})};
  auto p = find_problem(s);
  REQUIRE(p.has_value());
  CHECK(p->message == "deadlock: no rank can proceed after 0 of 8 actions; waiting: rank 0 on 2F0 rank 1 on 1F0");
  CHECK(p->detail ==
        "       |     0     1     2     3\n"
        "rank 0 | [2F0]  0F0   2B0   0B0 \n"
        "rank 1 | [1F0]  3F0   3B0   1B0 \n");
}

TEST_CASE("pipeweaver schedule files: errors name the file and the JSON pointer", "[unit]") {
  testing::TempDir dir;
  auto path = (dir / "s.json").string();
  auto error_of = [&](const std::string& text) {
    testing::write_text(path, text);
    try {
      load_schedule(path);
    } catch (const common::InputError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  const std::string head = R"({"version": 1, "ranks": 1, "microbatches": 1, "chunks": [{"module": "llm", "layers": [0, 4], "rank": 0}], )";
  CHECK(error_of(head + R"("actions": [["0F0", "0B0"]]})") == "(no error)");
  CHECK(error_of(head + R"("actions": [["0F0", "0Q0"]]})") ==
        path + ": /actions/0/1: expected an action such as 2F0 (stage, F/B/I/W, microbatch), got \"0Q0\"");
  CHECK(error_of(head + R"("actions": [["0F0", "0B0", "0F1"]]})") ==
        path + ": /actions/0/2: 0F1: microbatch 1 does not exist (the schedule has 1 microbatches)");
  CHECK(error_of(head + R"("actions": [["0F0"]], "extra": 1})") ==
        path + ": /extra: unknown member; expected one of: version, ranks, microbatches, chunks, microbatch_samples, actions, notes");
  CHECK(error_of(R"({"version": 1, "ranks": 0})") == path + ": /ranks: expected an integer in [1, 65536], got 0");
  const std::string rc = R"({"version": 1, "ranks": 1, "microbatches": 1, "chunks": [{"module": "llm", "layers": [0, 4], "rank": 0, "recompute": )";
  CHECK(error_of(rc + R"(true}], "actions": [["0F0", "0B0"]]})") == "(no error)");
  CHECK(error_of(rc + R"("yes"}], "actions": [["0F0", "0B0"]]})").find("/chunks/0/recompute: expected") != std::string::npos);
  CHECK(error_of(R"({"ranks": 1})").find("/version: missing required member") != std::string::npos);
}
