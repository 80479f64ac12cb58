#include "semu/semu.hpp"

#include <algorithm>
#include <filesystem>
#include <random>
#include <string>

#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "schedule/generators.hpp"
#include "semu/event_queue.hpp"
#include "semu/reference.hpp"
#include "semu/result_cache.hpp"
#include "test_support.hpp"

using namespace pipeweaver;
using schedule::Op;

namespace {

// Uniform costs: every stage forward tf, backward tb (split as tb/2 + tb/2), no transfers.
cost::StepCosts uniform(const schedule::Schedule& s, std::int64_t tf, std::int64_t tb, std::int64_t act = 0) {
  auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  std::fill(c.f_ns.begin(), c.f_ns.end(), tf);
  std::fill(c.b_ns.begin(), c.b_ns.end(), tb);
  std::fill(c.i_ns.begin(), c.i_ns.end(), tb / 2);
  std::fill(c.w_ns.begin(), c.w_ns.end(), tb - tb / 2);
  std::fill(c.act_bytes.begin(), c.act_bytes.end(), act);
  std::fill(c.act_w_bytes.begin(), c.act_w_bytes.end(), act / 4);
  return c;
}

}  // namespace

TEST_CASE("pipeweaver the event queue pops by time, then by scheduling order", "[unit]") {
  semu::EventQueue<int> q;
  q.schedule(5, 1);
  q.schedule(3, 2);
  q.schedule(5, 3);
  q.schedule(3, 4);
  std::vector<int> order;
  std::vector<std::int64_t> times;
  while (!q.empty()) {
    auto e = q.step();
    order.push_back(e.payload);
    times.push_back(q.now());
  }
  CHECK(order == std::vector<int>{2, 4, 1, 3});
  CHECK(times == std::vector<std::int64_t>{3, 3, 5, 5});
  CHECK_THROWS_AS(q.schedule(4, 9), common::InternalError);  // the past
}

TEST_CASE("pipeweaver the event queue orders an event by the number taken when it was announced", "[unit]") {
  semu::EventQueue<int> q;
  const std::uint32_t early = q.take_seq();  // 0
  q.schedule(5, 1);                          // 1
  (void)q.take_seq();                        // 2: taken, never scheduled
  q.schedule(5, 2);                          // 3
  q.schedule_taken(5, early, 3);
  q.schedule(4, 4);                          // 4
  std::vector<int> order;
  while (!q.empty()) order.push_back(q.step().payload);
  CHECK(order == std::vector<int>{4, 3, 1, 2});
  q.clear();
  CHECK(q.take_seq() == 0);
  CHECK(q.now() == 0);
}

TEST_CASE("pipeweaver GPipe and 1F1B match the closed form (m + p - 1)(tf + tb)", "[unit]") {
  const std::int32_t p = GENERATE(1, 2, 4, 8);
  const std::int32_t m = GENERATE(1, 3, 8, 16);
  const std::int64_t tf = 1000, tb = 2000;
  for (bool use_1f1b : {false, true}) {
    auto chunks = schedule::uniform_chunks("llm", p, 4);
    auto s = use_1f1b ? schedule::one_f_one_b(p, m, chunks) : schedule::gpipe(p, m, chunks);
    INFO((use_1f1b ? "1F1B" : "GPipe") << " p=" << p << " m=" << m);
    REQUIRE_FALSE(schedule::find_problem(s).has_value());
    auto r = semu::simulate(s, uniform(s, tf, tb));
    CHECK(r.step_ns == (m + p - 1) * (tf + tb));
    // bubble = (p - 1) / (m + p - 1), exactly: idle = p(p-1)(tf+tb).
    std::int64_t idle = 0;
    for (auto i : r.idle_ns) idle += i;
    CHECK(idle == static_cast<std::int64_t>(p) * (p - 1) * (tf + tb));
    CHECK(r.bubble_ratio == Approx(static_cast<double>(p - 1) / (m + p - 1)).epsilon(1e-12));
    for (auto b : r.busy_ns) CHECK(b == m * (tf + tb));
    CHECK(r.n_actions == 2 * p * m);
  }
}

TEST_CASE("pipeweaver interleaved 1F1B shrinks the bubble term by v", "[unit]") {
  const std::int32_t p = GENERATE(2, 4);
  const std::int32_t v = GENERATE(2, 3, 4);
  const std::int32_t m = GENERATE(1, 2, 4) * p;
  // The whole model costs p*v chunks of tf each way: a chunk is 1/v of a stage.
  const std::int64_t tf = 600, tb = 1200;  // per chunk
  auto s = schedule::interleaved_1f1b(p, m, schedule::uniform_chunks("llm", p * v, 2));
  INFO("p=" << p << " v=" << v << " m=" << m);
  REQUIRE_FALSE(schedule::find_problem(s).has_value());
  auto r = semu::simulate(s, uniform(s, tf, tb));
  // Per-stage times are v * chunk times: step = m * v(tf+tb) + (p - 1)(tf + tb).
  CHECK(r.step_ns == m * v * (tf + tb) + (p - 1) * (tf + tb));
}

TEST_CASE("pipeweaver 1F1B holds at most p - r microbatches on rank r; GPipe holds m", "[unit]") {
  const std::int32_t p = 4, m = 8;
  const std::int64_t act = 1 << 20;
  auto chunks = schedule::uniform_chunks("llm", p, 4);
  auto s1 = schedule::one_f_one_b(p, m, chunks);
  auto c1 = uniform(s1, 10, 20, act);
  for (std::int32_t r = 0; r < p; ++r) c1.static_bytes[static_cast<std::size_t>(r)] = 1000;
  auto r1 = semu::simulate(s1, c1);
  for (std::int32_t r = 0; r < p; ++r) {
    CHECK(r1.peak_act_microbatches[static_cast<std::size_t>(r)] == p - r);
    CHECK(r1.peak_mem_bytes[static_cast<std::size_t>(r)] == 1000 + (p - r) * act);
  }
  auto sg = schedule::gpipe(p, m, chunks);
  auto rg = semu::simulate(sg, uniform(sg, 10, 20, act));
  for (auto n : rg.peak_act_microbatches) CHECK(n == m);
  CHECK_FALSE(rg.exceeds_memory);

  auto tight = uniform(sg, 10, 20, act);
  tight.capacity_bytes[2] = 4 * act;
  CHECK(semu::simulate(sg, tight).exceeds_memory);
}

TEST_CASE("pipeweaver transfers add latency on the critical path and serialise on links", "[unit]") {
  // Two ranks, one microbatch: F0 (10) -> send (5) -> F1 (10) -> B1 (20) -> send (5) -> B0 (20).
  auto s = schedule::gpipe(2, 1, schedule::uniform_chunks("llm", 2, 1));
  auto c = uniform(s, 10, 20);
  std::fill(c.send_f_ns.begin(), c.send_f_ns.end(), 5);
  std::fill(c.send_b_ns.begin(), c.send_b_ns.end(), 5);
  auto r = semu::simulate(s, c, {.record_timeline = true});
  CHECK(r.step_ns == 10 + 5 + 10 + 20 + 5 + 20);
  CHECK(r.p2p_ns == 10);
  CHECK(r.n_transfers == 2);

  // Many microbatches whose transfers take longer than the compute: the link is the
  // bottleneck, so forwards reach rank 1 one link-time apart.
  auto s2 = schedule::gpipe(2, 4, schedule::uniform_chunks("llm", 2, 1));
  auto c2 = uniform(s2, 1, 2);
  std::fill(c2.send_f_ns.begin(), c2.send_f_ns.end(), 10);
  auto r2 = semu::simulate(s2, c2, {.record_timeline = true});
  std::vector<std::int64_t> arrivals;
  for (const auto& e : r2.timeline)
    if (e.kind == semu::TimelineEvent::Kind::transfer && e.action.op == Op::F) arrivals.push_back(e.end_ns);
  CHECK(arrivals == std::vector<std::int64_t>{11, 21, 31, 41});
}

TEST_CASE("pipeweaver a zero-bubble split backward frees activations at I and W", "[unit]") {
  schedule::Schedule s;
  s.n_ranks = 1;
  s.n_microbatches = 1;
  s.chunks = {{"llm", 0, 1, 0}};
  s.rank_actions = {{{0, Op::F, 0}, {0, Op::I, 0}, {0, Op::W, 0}}};
  auto c = uniform(s, 10, 20, 400);
  auto r = semu::simulate(s, c, {.record_timeline = true});
  CHECK(r.step_ns == 10 + 10 + 10);
  std::vector<std::int64_t> mem;
  for (const auto& m : r.memory) mem.push_back(m.bytes);
  CHECK(mem == std::vector<std::int64_t>{400, 100, 0});
}

TEST_CASE("pipeweaver SEMU is deterministic within one process", "[unit]") {
  auto s = schedule::interleaved_1f1b(4, 8, schedule::uniform_chunks("llm", 8, 2));
  auto c = uniform(s, 7, 13, 100);
  for (std::size_t i = 0; i < c.f_ns.size(); ++i) {
    c.f_ns[i] += static_cast<std::int64_t>(i % 5);
    c.send_f_ns[i] = static_cast<std::int64_t>(i % 3);
    c.send_b_ns[i] = static_cast<std::int64_t>(i % 2);
  }
  auto a = semu::simulate(s, c, {.record_timeline = true});
  auto b = semu::simulate(s, c, {.record_timeline = true});
  CHECK(a.step_ns == b.step_ns);
  CHECK(a.busy_ns == b.busy_ns);
  REQUIRE(a.timeline.size() == b.timeline.size());
  for (std::size_t i = 0; i < a.timeline.size(); ++i) {
    CHECK(a.timeline[i].start_ns == b.timeline[i].start_ns);
    CHECK(a.timeline[i].action == b.timeline[i].action);
  }
}

TEST_CASE("pipeweaver SEMU's outputs are the same bytes in separate processes and at any thread count",
          "[unit]") {
  // Child processes of the built CLI: `simulate` twice (its JSON less the wall-clock timing
  // block, and its Chrome trace of every emulated event), and `search` with 1 and with 3
  // threads scoring candidates (every chosen schedule and step time in its -o file); the
  // time budget is never reached, so nothing depends on timing.
  testing::TempDir dir;
  const auto cfg = [](const std::string& rel) {
    return testing::shell_quote((testing::source_dir() / "configs" / rel).string());
  };
  const auto q = [](const std::filesystem::path& p) { return testing::shell_quote(p.string()); };
  const auto cli = [](const std::string& args) {
    const auto r = testing::run_cli(PIPEWEAVER_CLI, args);
    INFO(args << "\n" << r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };
  cli("gen-trace -q --mix " + cfg("mixes/video-heavy.json") + " --model " + cfg("models/llava-7b.json") +
      " --batches 1 --seed 9 -o " + q(dir / "t.jsonl"));
  const std::string in = " --model " + cfg("models/llava-7b.json") + " --cluster " +
                         cfg("clusters/h100-80g-8x.json") + " --trace " + q(dir / "t.jsonl");
  std::string json[2], trace[2], picks[2];
  for (int k = 0; k < 2; ++k) {
    const auto chrome = dir / ("c" + std::to_string(k) + ".json");
    common::Json j = common::Json::parse(
        cli("simulate" + in + " --schedule interleaved-1f1b --json --chrome-trace " + q(chrome)));
    REQUIRE(j.contains("timing"));  // wall-clock milliseconds: the one part that may differ
    j.erase("timing");
    json[k] = j.dump();
    trace[k] = common::read_file(chrome.string());
    const auto out = dir / ("s" + std::to_string(k) + ".jsonl");
    cli("search" + in + " --threads " + (k == 0 ? "1" : "3") + " --time-budget-ms 1000000 -o " + q(out));
    picks[k] = common::read_file(out.string());
  }
  CHECK(json[0].size() > 100);
  CHECK(json[0] == json[1]);
  CHECK(trace[0].size() > 1000);
  CHECK(trace[0] == trace[1]);
  CHECK(std::count(picks[0].begin(), picks[0].end(), '\n') == 1);
  CHECK(picks[0] == picks[1]);
}

namespace {

// A zero-bubble-style variant of a schedule: every B becomes I, and its W follows either at
// once or at the end of the rank's order.
schedule::Schedule split_backward(schedule::Schedule s, bool w_at_end) {
  for (auto& actions : s.rank_actions) {
    std::vector<schedule::Action> out, tail;
    for (const auto& a : actions) {
      if (a.op != Op::B) {
        out.push_back(a);
        continue;
      }
      out.push_back({a.stage, Op::I, a.microbatch});
      (w_at_end ? tail : out).push_back({a.stage, Op::W, a.microbatch});
    }
    out.insert(out.end(), tail.begin(), tail.end());
    actions = out;
  }
  return s;
}

// Random costs in [0, max_ns]: small ranges make many events tie.
cost::StepCosts random_costs(const schedule::Schedule& s, std::mt19937_64& rng, std::int64_t max_ns) {
  auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  std::uniform_int_distribution<std::int64_t> t(0, max_ns), bytes(0, 1000);
  for (std::size_t i = 0; i < c.f_ns.size(); ++i) {
    c.f_ns[i] = t(rng);
    c.i_ns[i] = t(rng);
    c.w_ns[i] = t(rng);
    c.b_ns[i] = c.i_ns[i] + c.w_ns[i];
    c.send_f_ns[i] = t(rng);
    c.send_b_ns[i] = t(rng);
    c.act_w_bytes[i] = bytes(rng);
    c.act_bytes[i] = c.act_w_bytes[i] + bytes(rng);
  }
  for (auto& b : c.static_bytes) b = bytes(rng);
  for (auto& b : c.capacity_bytes) b = 1500 + bytes(rng);
  return c;
}

void require_same(const semu::Result& a, const semu::Result& b) {
  REQUIRE(a.step_ns == b.step_ns);
  REQUIRE(a.busy_ns == b.busy_ns);
  REQUIRE(a.idle_ns == b.idle_ns);
  REQUIRE(a.bubble_ratio == b.bubble_ratio);
  REQUIRE(a.p2p_ns == b.p2p_ns);
  REQUIRE(a.n_transfers == b.n_transfers);
  REQUIRE(a.peak_mem_bytes == b.peak_mem_bytes);
  REQUIRE(a.peak_act_microbatches == b.peak_act_microbatches);
  REQUIRE(a.exceeds_memory == b.exceeds_memory);
  REQUIRE(a.n_actions == b.n_actions);
  REQUIRE(a.timeline.size() == b.timeline.size());
  for (std::size_t i = 0; i < a.timeline.size(); ++i) {
    const auto &x = a.timeline[i], &y = b.timeline[i];
    INFO("timeline event " << i);
    REQUIRE(x.kind == y.kind);
    REQUIRE(x.rank == y.rank);
    REQUIRE(x.peer_rank == y.peer_rank);
    REQUIRE(x.action == y.action);
    REQUIRE(x.start_ns == y.start_ns);
    REQUIRE(x.end_ns == y.end_ns);
  }
  REQUIRE(a.memory.size() == b.memory.size());
  for (std::size_t i = 0; i < a.memory.size(); ++i) {
    REQUIRE(a.memory[i].rank == b.memory[i].rank);
    REQUIRE(a.memory[i].time_ns == b.memory[i].time_ns);
    REQUIRE(a.memory[i].bytes == b.memory[i].bytes);
  }
}

}  // namespace

TEST_CASE("pipeweaver SEMU agrees exactly with the reference event loop", "[unit]") {
  // Generators x sizes x cost ranges (tiny ranges: many ties and zero-time passes), B whole
  // and split into I + W, timeline on and off; one workspace reused across all sizes.
  std::mt19937_64 rng(12345);
  semu::Workspace workspace;
  std::int64_t cases = 0, tied_transfers = 0;
  for (const std::int32_t p : {1, 2, 3, 4, 8}) {
    for (const std::int32_t m : {1, 2, 5, 8, 16}) {
      std::vector<schedule::Schedule> schedules = {schedule::gpipe(p, m, schedule::uniform_chunks("llm", p, 1)),
                                                   schedule::one_f_one_b(p, m, schedule::uniform_chunks("llm", p, 1))};
      if (m % p == 0)
        for (const std::int32_t v : {2, 3})
          schedules.push_back(schedule::interleaved_1f1b(p, m, schedule::uniform_chunks("llm", p * v, 1)));
      const std::size_t n_base = schedules.size();
      for (std::size_t i = 0; i < n_base; ++i)
        for (const bool w_at_end : {false, true}) schedules.push_back(split_backward(schedules[i], w_at_end));
      for (const auto& s : schedules) {
        REQUIRE_FALSE(schedule::find_problem(s).has_value());
        for (const std::int64_t max_ns : {0, 2, 5, 1000}) {
          const cost::StepCosts c = random_costs(s, rng, max_ns);
          for (const bool timeline : {false, true}) {
            INFO("p=" << p << " m=" << m << " stages=" << s.n_stages() << " max_ns=" << max_ns << " timeline=" << timeline);
            const semu::Result ref = semu::simulate_reference(s, c, {.record_timeline = timeline});
            require_same(semu::simulate(s, c, {.record_timeline = timeline}, workspace), ref);
            require_same(semu::simulate(s, c, {.record_timeline = timeline}), ref);
            ++cases;
            if (timeline)
              for (std::size_t k = 1; k < ref.timeline.size(); ++k)
                if (ref.timeline[k].kind == semu::TimelineEvent::Kind::transfer &&
                    ref.timeline[k - 1].kind == semu::TimelineEvent::Kind::transfer &&
                    ref.timeline[k].start_ns == ref.timeline[k - 1].start_ns)
                  ++tied_transfers;
          }
        }
      }
    }
  }
  CHECK(cases > 500);
  CHECK(tied_transfers > 100);  // the tie-breaking order was exercised
}

TEST_CASE("pipeweaver the SEMU result cache hits only on identical schedule and costs", "[unit]") {
  std::mt19937_64 rng(7);
  const auto s = schedule::interleaved_1f1b(4, 8, schedule::uniform_chunks("llm", 8, 2));
  const cost::StepCosts c = random_costs(s, rng, 50);
  semu::ResultCache cache;
  require_same(cache.simulate(s, c), semu::simulate_reference(s, c));
  require_same(cache.simulate(s, c), semu::simulate_reference(s, c));
  CHECK(cache.hits() == 1);

  // Any change simulate() reads is a miss and gives that change's own result.
  auto c2 = c;
  c2.w_ns[17] += 1;
  auto s2 = s;
  std::swap(s2.rank_actions[1][5], s2.rank_actions[1][6]);
  REQUIRE_FALSE(schedule::find_problem(s2).has_value());
  auto c3 = c;
  c3.capacity_bytes[3] = 1;
  require_same(cache.simulate(s, c2), semu::simulate_reference(s, c2));
  require_same(cache.simulate(s2, c), semu::simulate_reference(s2, c));
  require_same(cache.simulate(s, c3), semu::simulate_reference(s, c3));
  require_same(cache.simulate(s, c, {.record_timeline = true}), semu::simulate_reference(s, c, {.record_timeline = true}));
  CHECK(cache.hits() == 1);
  CHECK(cache.lookups() == 6);
  CHECK(semu::fingerprint(s, c) != semu::fingerprint(s, c2));
  CHECK(semu::fingerprint(s, c) != semu::fingerprint(s2, c));

  // What simulate() does not read (module names, microbatch packing) still hits.
  auto s4 = s;
  for (auto& ch : s4.chunks) ch.module = "other";
  s4.microbatch_samples.assign(8, {0});
  require_same(cache.simulate(s4, c), semu::simulate_reference(s, c));
  CHECK(cache.hits() == 2);
}
