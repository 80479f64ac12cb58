// ZB-H1: placement and pass invariants over a grid of (p, m), the closed-form step time
// under uniform costs (exact integers, as test_semu.cpp does for GPipe/1F1B), the memory
// bound, and the reduction to 1F1B when weight gradients cost nothing.
#include <algorithm>

#include "schedule/generators.hpp"
#include "semu/semu.hpp"
#include "test_support.hpp"

using namespace pipeweaver;
using schedule::Op;

namespace {

// Every stage forward tf, input gradient ti, weight gradient tw, full backward ti + tw; no
// transfers; activations act bytes of which act_w stay from I until W.
cost::StepCosts uniform(const schedule::Schedule& s, std::int64_t tf, std::int64_t ti, std::int64_t tw,
                        std::int64_t act = 0, std::int64_t act_w = 0) {
  auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  std::fill(c.f_ns.begin(), c.f_ns.end(), tf);
  std::fill(c.i_ns.begin(), c.i_ns.end(), ti);
  std::fill(c.w_ns.begin(), c.w_ns.end(), tw);
  std::fill(c.b_ns.begin(), c.b_ns.end(), ti + tw);
  std::fill(c.act_bytes.begin(), c.act_bytes.end(), act);
  std::fill(c.act_w_bytes.begin(), c.act_w_bytes.end(), act_w);
  return c;
}

// The closed form of schedule::zb_h1's step time (see generators.hpp), valid for tw <= tf.
std::int64_t zb_h1_step(std::int64_t p, std::int64_t m, std::int64_t tf, std::int64_t ti, std::int64_t tw) {
  return m * (tf + ti + tw) + (p - 1) * (tf + ti) - (std::min(m, p) - 1) * std::min(tw, ti);
}

}  // namespace

TEST_CASE("pipeweaver ZB-H1 is valid and runs F, I and W once per stage and microbatch", "[unit]") {
  for (std::int32_t p = 1; p <= 8; ++p)
    for (std::int32_t m : {1, 2, 3, 5, 7, 8, 9, 16, 33}) {
      INFO("p=" << p << " m=" << m);
      const auto s = schedule::zb_h1(p, m, schedule::uniform_chunks("llm", p, 2));
      const auto problem = schedule::find_problem(s);
      REQUIRE_FALSE(problem.has_value());
      std::vector<int> seen(static_cast<std::size_t>(p * m * 4), 0);
      for (std::int32_t r = 0; r < p; ++r) {
        CHECK(s.chunks[static_cast<std::size_t>(r)].rank == r);
        const auto& list = s.rank_actions[static_cast<std::size_t>(r)];
        CHECK(list.size() == static_cast<std::size_t>(3 * m));
        for (const auto& a : list) {
          CHECK(a.stage == r);
          CHECK(a.op != Op::B);
          ++seen[static_cast<std::size_t>((a.stage * m + a.microbatch) * 4 + static_cast<int>(a.op))];
        }
      }
      for (std::int32_t st = 0; st < p; ++st)
        for (std::int32_t mb = 0; mb < m; ++mb)
          for (Op op : {Op::F, Op::I, Op::W})
            CHECK(seen[static_cast<std::size_t>((st * m + mb) * 4 + static_cast<int>(op))] == 1);
    }
}

TEST_CASE("pipeweaver ZB-H1 is registered as zb-h1 and takes one chunk per rank", "[unit]") {
  const auto* g = schedule::find_generator("ZB-H1");
  REQUIRE(g != nullptr);
  CHECK(std::string(g->name) == "zb-h1");
  CHECK_FALSE(g->interleaved);
  CHECK(schedule::generator_names().find("zb-h1") != std::string::npos);
  CHECK(g->make(4, 8, schedule::uniform_chunks("llm", 4, 1)) == schedule::zb_h1(4, 8, schedule::uniform_chunks("llm", 4, 1)));
  CHECK_THROWS_AS(schedule::zb_h1(4, 8, schedule::uniform_chunks("llm", 8, 1)), common::UsageError);
  CHECK_THROWS_AS(schedule::gpipe(2, 4, schedule::uniform_chunks("llm", 4, 1)), common::UsageError);
  CHECK_THROWS_AS(schedule::one_f_one_b(2, 4, schedule::uniform_chunks("llm", 1, 1)), common::UsageError);
}

TEST_CASE("pipeweaver ZB-H1 matches its closed form and shrinks 1F1B's bubble by 2(p-1)T_W", "[unit]") {
  struct Costs {
    std::int64_t tf, ti, tw;
  };
  // tw <= ti (the paper's regime) and ti < tw <= tf; tw = 0 is the 1F1B limit.
  const Costs costs[] = {{1000, 1000, 1000}, {3000, 2000, 1000}, {2000, 3000, 2000}, {5000, 3000, 4000},
                         {700, 1300, 0},     {4000, 1000, 3000}, {1500, 1500, 1500}};
  for (std::int32_t p : {1, 2, 3, 4, 5, 8})
    for (std::int32_t m : {1, 2, 3, 4, 6, 8, 13, 16})
      for (const Costs& c : costs) {
        INFO("p=" << p << " m=" << m << " tf=" << c.tf << " ti=" << c.ti << " tw=" << c.tw);
        const auto chunks = schedule::uniform_chunks("llm", p, 1);
        const auto zb = schedule::zb_h1(p, m, chunks);
        const auto r = semu::simulate(zb, uniform(zb, c.tf, c.ti, c.tw));
        CHECK(r.step_ns == zb_h1_step(p, m, c.tf, c.ti, c.tw));
        for (auto b : r.busy_ns) CHECK(b == m * (c.tf + c.ti + c.tw));
        // 1F1B with the same passes fused (B = I + W): (m + p - 1)(tf + ti + tw).
        const auto ob = schedule::one_f_one_b(p, m, chunks);
        const auto r1 = semu::simulate(ob, uniform(ob, c.tf, c.ti, c.tw));
        CHECK(r1.step_ns == (m + p - 1) * (c.tf + c.ti + c.tw));
        CHECK(r.step_ns <= r1.step_ns);
        if (m >= p && c.tw <= c.ti) {
          // The paper's bubble, (p - 1)(T_F + T_B - T_W), against 1F1B's (p - 1)(T_F + T_B + T_W).
          CHECK(r.step_ns - m * (c.tf + c.ti + c.tw) == (p - 1) * (c.tf + c.ti - c.tw));
          CHECK(r1.step_ns - r.step_ns == 2 * (p - 1) * c.tw);
        }
      }
}

TEST_CASE("pipeweaver ZB-H1 with free weight gradients takes exactly 1F1B's step", "[unit]") {
  for (std::int32_t p : {1, 2, 4, 7})
    for (std::int32_t m : {1, 3, 4, 8, 12}) {
      INFO("p=" << p << " m=" << m);
      const auto chunks = schedule::uniform_chunks("llm", p, 1);
      const auto zb = schedule::zb_h1(p, m, chunks);
      const auto ob = schedule::one_f_one_b(p, m, chunks);
      const auto rz = semu::simulate(zb, uniform(zb, 900, 1700, 0));
      const auto r1 = semu::simulate(ob, uniform(ob, 900, 1700, 0));
      CHECK(rz.step_ns == r1.step_ns);
      CHECK(rz.step_ns == (m + p - 1) * (900 + 1700));
      CHECK(rz.idle_ns == r1.idle_ns);
    }
}

TEST_CASE("pipeweaver ZB-H1 keeps 1F1B's peak activation memory (rank 0) on every rank", "[unit]") {
  const std::int64_t act = 1 << 20, act_w = act / 4, fixed = 5000;
  for (std::int32_t p : {1, 2, 4, 6})
    for (std::int32_t m : {1, 2, 3, 4, 6, 8, 16}) {
      INFO("p=" << p << " m=" << m);
      const auto chunks = schedule::uniform_chunks("llm", p, 1);
      const auto zb = schedule::zb_h1(p, m, chunks);
      auto cz = uniform(zb, 10, 10, 10, act, act_w);
      std::fill(cz.static_bytes.begin(), cz.static_bytes.end(), fixed);
      const auto rz = semu::simulate(zb, cz);
      const auto ob = schedule::one_f_one_b(p, m, chunks);
      auto co = uniform(ob, 10, 10, 10, act, act_w);
      std::fill(co.static_bytes.begin(), co.static_bytes.end(), fixed);
      const auto ro = semu::simulate(ob, co);
      const std::int64_t bound_1f1b = *std::max_element(ro.peak_mem_bytes.begin(), ro.peak_mem_bytes.end());
      CHECK(bound_1f1b == fixed + std::min(m, p) * act);
      for (std::int32_t r = 0; r < p; ++r) {
        const auto ri = static_cast<std::size_t>(r);
        // In flight (forward done, weight gradient not yet): min(m, p) on every rank, the most
        // 1F1B holds (on rank 0); 1F1B's rank r holds min(m, p - r).
        CHECK(rz.peak_act_microbatches[ri] == std::min(m, p));
        CHECK(ro.peak_act_microbatches[ri] == std::min(m, p - r));
        CHECK(rz.peak_mem_bytes[ri] <= bound_1f1b);
        // Of those, up to r hold only their W activations: (p - r) A + r A_w when m >= p.
        if (m >= p) CHECK(rz.peak_mem_bytes[ri] == fixed + (p - r) * act + r * act_w);
      }
      CHECK(rz.peak_mem_bytes[0] == bound_1f1b);
    }
}
