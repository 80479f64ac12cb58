// The schedule search: the weaver's orders, the min-max partition, compute-balanced packing,
// the baselines' setup, the partition-switch charge, and the search's results against
// outside figures: its picks re-played by `simulate` from the schedule file, a strict gain
// over every baseline on a mixed batch, and a brute-force optimum on tiny cases.
#include "search/search.hpp"

#include <algorithm>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <set>

#include "common/json_io.hpp"
#include "schedule/generators.hpp"
#include "search/baselines.hpp"
#include "search/packing.hpp"
#include "search/partition.hpp"
#include "search/weave.hpp"
#include "spec/cluster.hpp"
#include "spec/model.hpp"
#include "spec/trace.hpp"
#include "layout_test_util.hpp"
#include "spec_test_util.hpp"
#include "test_support.hpp"

using namespace pipeweaver;

namespace {

cost::StepCosts uniform(const schedule::Schedule& s, std::int64_t tf, std::int64_t ti, std::int64_t tw,
                        std::int64_t act = 0) {
  auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  std::fill(c.f_ns.begin(), c.f_ns.end(), tf);
  std::fill(c.b_ns.begin(), c.b_ns.end(), ti + tw);
  std::fill(c.i_ns.begin(), c.i_ns.end(), ti);
  std::fill(c.w_ns.begin(), c.w_ns.end(), tw);
  std::fill(c.act_bytes.begin(), c.act_bytes.end(), act);
  std::fill(c.act_w_bytes.begin(), c.act_w_bytes.end(), act / 4);
  return c;
}

schedule::Schedule skeleton(std::int32_t p, std::int32_t m, std::int32_t n_chunks, search::Placement pl) {
  schedule::Schedule s;
  s.n_ranks = p;
  s.n_microbatches = m;
  s.chunks = schedule::uniform_chunks("llm", n_chunks, 1);
  search::place(s.chunks, p, pl);
  return s;
}

// A batch of n samples for LLaVA-7B: text of varying length, every third with an image.
spec::Batch llava_batch(std::int32_t n, std::uint32_t seed, bool uniform_samples = false) {
  std::mt19937 rng(seed);
  spec::Batch b;
  for (std::int32_t i = 0; i < n; ++i) {
    spec::Sample s;
    s.text_tokens = uniform_samples ? 512 : 64 + static_cast<std::int64_t>(rng() % 1500);
    if (!uniform_samples && i % 3 == 0) s.images.push_back({576, 1});
    b.samples.push_back(s);
  }
  return b;
}

struct Fixture {
  spec::ModelSpec model = spec::load_model(pwtest::config("models/llava-7b.json"));
  spec::ClusterSpec cluster = spec::load_cluster(pwtest::config("clusters/h100-80g-8x.json"));
  Fixture() { cluster.pipeline_size = 4; }
};

// `simulate` of the built executable, in a child process, on `schedule` as the search's -o
// writes it (schedule::to_json), `batch` alone in a trace, and the cluster file with the
// pipeline size and memory of `cluster`: the JSON it prints.
common::Json simulate_cli(const std::string& model_file, const spec::ClusterSpec& cluster,
                          const spec::Batch& batch, const schedule::Schedule& schedule) {
  testing::TempDir dir;
  common::Json c = common::load_json_file(pwtest::config("clusters/" + cluster.name + ".json"));
  c["pipeline_size"] = cluster.pipeline_size;
  c["device"]["memory"] = cluster.device.memory_bytes;
  testing::write_text(dir / "cluster.json", c.dump());
  spec::Batch b = batch;
  b.index = 0;
  testing::write_text(dir / "trace.jsonl", spec::batch_to_json_line(b) + "\n");
  testing::write_text(dir / "schedule.json", schedule::to_json(schedule).dump());
  const auto q = [](const std::filesystem::path& p) { return testing::shell_quote(p.string()); };
  const auto r = testing::run_cli(PIPEWEAVER_CLI, "simulate --model " + testing::shell_quote(model_file) +
                                                      " --cluster " + q(dir / "cluster.json") + " --trace " +
                                                      q(dir / "trace.jsonl") + " --batch 0 --schedule " +
                                                      q(dir / "schedule.json") + " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return common::Json::parse(r.out);
}

// What `simulate` gives a picked schedule is what the search scored it at.
void check_replays(const std::string& model_file, const spec::ClusterSpec& cluster, const spec::Batch& batch,
                   const search::Evaluated& e) {
  const common::Json j = simulate_cli(model_file, cluster, batch, e.schedule);
  CHECK(j.at("step_ms").get<double>() == static_cast<double>(e.result.step_ns) * 1e-6);
  CHECK(j.at("exceeds_memory").get<bool>() == !e.fits());
}

}  // namespace

TEST_CASE("pipeweaver the weaver's orders pass validation for any placement and policy", "[unit]") {
  std::mt19937 rng(11);
  for (int trial = 0; trial < 60; ++trial) {
    const std::int32_t p = 1 + static_cast<std::int32_t>(rng() % 5);
    const std::int32_t v = 1 + static_cast<std::int32_t>(rng() % 3);
    const std::int32_t m = 1 + static_cast<std::int32_t>(rng() % 9);
    const std::int32_t extra = static_cast<std::int32_t>(rng() % 3);  // uneven chunks per rank too
    schedule::Schedule s = skeleton(p, m, p * v + extra, trial % 2 ? search::Placement::looped : search::Placement::vshape);
    cost::StepCosts c = uniform(s, 1, 1, 1, 100);
    for (auto* vec : {&c.f_ns, &c.i_ns, &c.w_ns, &c.send_f_ns, &c.send_b_ns})
      for (auto& x : *vec) x = 1 + static_cast<std::int64_t>(rng() % 50);
    for (std::size_t k = 0; k < c.b_ns.size(); ++k) c.b_ns[k] = c.i_ns[k] + c.w_ns[k];
    for (std::size_t r = 0; r < c.capacity_bytes.size(); ++r) c.capacity_bytes[r] = (trial % 3 == 0) ? 250 : 0;
    search::WeavePolicy pol;
    pol.split_backward = trial % 2 == 0;
    pol.forward = trial % 4 < 2 ? search::ForwardOrder::breadth : search::ForwardOrder::depth;
    pol.w_bounded_by_memory = trial % 6 < 3;
    search::weave(s, c, pol);
    INFO("p=" << p << " v=" << v << " m=" << m << " extra=" << extra);
    const auto problem = schedule::find_problem(s);
    CHECK_FALSE(problem.has_value());
    const semu::Result r = semu::simulate(s, c);
    CHECK(r.n_actions == static_cast<std::int64_t>(s.n_stages()) * m * (pol.split_backward ? 3 : 2));
  }
}

TEST_CASE("pipeweaver woven one-chunk-per-rank pipelines meet the closed form (m + p - 1)(tf + tb)", "[unit]") {
  for (const std::int32_t p : {1, 2, 4, 7})
    for (const std::int32_t m : {1, 3, 8, 16}) {
      schedule::Schedule s = skeleton(p, m, p, search::Placement::looped);
      const cost::StepCosts c = uniform(s, 3, 4, 2);
      search::weave(s, c, {false, search::ForwardOrder::breadth, 0});
      CHECK(semu::simulate(s, c).step_ns == static_cast<std::int64_t>(m + p - 1) * (3 + 6));
      // Splitting the backward and deferring W never makes it slower here.
      schedule::Schedule z = skeleton(p, m, p, search::Placement::looped);
      search::weave(z, c, {true, search::ForwardOrder::breadth, 0});
      CHECK(semu::simulate(z, c).step_ns <= static_cast<std::int64_t>(m + p - 1) * (3 + 6));
    }
}

TEST_CASE("pipeweaver the weaver admits a microbatch only when its activations fit", "[unit]") {
  const std::int32_t p = 4, m = 12;
  for (const std::int64_t fit : {1, 2, 3}) {
    schedule::Schedule s = skeleton(p, m, 2 * p, search::Placement::looped);
    cost::StepCosts c = uniform(s, 2, 2, 2, 1000);
    for (std::size_t r = 0; r < static_cast<std::size_t>(p); ++r) {
      c.static_bytes[r] = 500;
      // Two chunks per rank: a microbatch needs 2000 bytes; room for `fit` of them.
      c.capacity_bytes[r] = 500 + fit * 2000;
    }
    search::weave(s, c, {false, search::ForwardOrder::breadth, 0});
    const semu::Result r = semu::simulate(s, c);
    CHECK_FALSE(r.exceeds_memory);
    for (const std::int64_t k : r.peak_act_microbatches) CHECK(k <= 2 * fit);
  }
}

TEST_CASE("pipeweaver W held within memory admits more microbatches and still fits", "[unit]") {
  // Recomputed layers: little kept from F to the backward, much from I to W.
  const std::int32_t p = 4, m = 16;
  schedule::Schedule base = skeleton(p, m, 2 * p, search::Placement::looped);
  cost::StepCosts c = uniform(base, 2, 2, 2, 400);
  std::fill(c.act_w_bytes.begin(), c.act_w_bytes.end(), 2000);
  for (std::size_t r = 0; r < static_cast<std::size_t>(p); ++r) {
    c.static_bytes[r] = 500;
    c.capacity_bytes[r] = 500 + 9000;
  }
  std::int64_t in_flight[2] = {0, 0};
  for (const bool bounded : {false, true}) {
    schedule::Schedule s = base;
    search::weave(s, c, {true, search::ForwardOrder::breadth, 0, bounded});
    CHECK_FALSE(schedule::find_problem(s).has_value());
    const semu::Result r = semu::simulate(s, c);
    CHECK_FALSE(r.exceeds_memory);
    in_flight[bounded ? 1 : 0] = *std::max_element(r.peak_act_microbatches.begin(), r.peak_act_microbatches.end());
  }
  CHECK(in_flight[1] > in_flight[0]);
}

TEST_CASE("pipeweaver split_min_max finds the best contiguous split (against brute force)", "[unit]") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 200; ++trial) {
    const std::size_t n = 1 + rng() % 9;
    std::vector<double> w(n);
    for (double& x : w) x = static_cast<double>(1 + rng() % 20);
    const std::int32_t k = 1 + static_cast<std::int32_t>(rng() % n);
    const std::vector<std::int32_t> b = search::split_min_max(w, k);
    REQUIRE(b.size() == static_cast<std::size_t>(k) + 1);
    CHECK(b.front() == 0);
    CHECK(b.back() == static_cast<std::int32_t>(n));
    double got = 0;
    for (std::size_t j = 0; j + 1 < b.size(); ++j) {
      CHECK(b[j] < b[j + 1]);
      got = std::max(got, std::accumulate(w.begin() + b[j], w.begin() + b[j + 1], 0.0));
    }
    // Brute force over all cut sets.
    double best = 1e18;
    for (std::uint32_t mask = 0; mask < (1u << (n - 1)); ++mask) {
      if (static_cast<std::int32_t>(__builtin_popcount(mask)) != k - 1) continue;
      double part = 0, worst = 0;
      for (std::size_t i = 0; i < n; ++i) {
        part += w[i];
        if (i + 1 == n || (mask >> i) & 1u) {
          worst = std::max(worst, part);
          part = 0;
        }
      }
      best = std::min(best, worst);
    }
    CHECK(got == best);
  }
}

TEST_CASE("pipeweaver balance_ranks lowers the busiest rank until no single layer move can", "[unit]") {
  // Two modules as the search sees them: an encoder of light layers, an LLM whose first and
  // last layers carry the embedding and the LM head.
  const spec::ModelSpec model = spec::load_model(pwtest::config("models/llava-7b.json"));
  const int vision = model.find("vision"), llm = model.llm_index;
  std::mt19937 rng(3);
  for (int trial = 0; trial < 40; ++trial) {
    const std::int32_t p = 2 + static_cast<std::int32_t>(rng() % 7);
    std::vector<search::ModuleWeights> w(2);
    w[0].module = vision;
    w[0].w.assign(24, 0.05 + 0.3 * static_cast<double>(rng() % 100) / 100.0);
    w[1].module = llm;
    w[1].w.assign(32, 1.0);
    w[1].w.front() += 0.1;
    w[1].w.back() += 0.3 + 2.0 * static_cast<double>(rng() % 100) / 100.0;
    const std::vector<std::int32_t> counts = {p / 2 + static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(p)),
                                              p + static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(2 * p))};
    std::vector<schedule::Chunk> chunks = search::balanced_partition(model, w, counts);
    search::place(chunks, p, trial % 2 ? search::Placement::vshape : search::Placement::looped);
    const auto loads = [&](const std::vector<schedule::Chunk>& cs) {
      std::vector<double> l(static_cast<std::size_t>(p), 0.0);
      const std::vector<double> cw = search::chunk_weights(model, w, cs);
      for (std::size_t c = 0; c < cs.size(); ++c) l[static_cast<std::size_t>(cs[c].rank)] += cw[c];
      return l;
    };
    const auto peak = [&](const std::vector<schedule::Chunk>& cs) {
      const std::vector<double> l = loads(cs);
      return *std::max_element(l.begin(), l.end());
    };
    std::vector<schedule::Chunk> balanced = chunks;
    search::balance_ranks(model, w, balanced, p);
    INFO("trial " << trial << ", " << p << " ranks");
    // Chunks may be dropped, not reordered or moved; the rest tile every module; every rank
    // keeps a chunk.
    REQUIRE(balanced.size() <= chunks.size());
    std::size_t k = 0;
    for (const schedule::Chunk& c : balanced) {
      while (k < chunks.size() && (chunks[k].module != c.module || chunks[k].rank != c.rank)) ++k;
      CHECK(k < chunks.size());
      ++k;
    }
    std::set<std::int32_t> ranks;
    for (std::size_t c = 0; c < balanced.size(); ++c) {
      ranks.insert(balanced[c].rank);
      CHECK(balanced[c].layer_end - balanced[c].layer_begin >= 1);
      CHECK(balanced[c].layer_begin == (c == 0 || balanced[c - 1].module != balanced[c].module ? 0 : balanced[c - 1].layer_end));
    }
    CHECK(ranks.size() == static_cast<std::size_t>(p));
    CHECK(balanced.back().layer_end == 32);
    const double before = peak(chunks), after = peak(balanced);
    CHECK(after <= before + 1e-9);
    // Local optimum: no single move of a layer between two chunks of a module lowers the peak.
    for (std::size_t a = 0; a < balanced.size(); ++a)
      for (std::size_t b = 0; b < balanced.size(); ++b) {
        if (a == b || balanced[a].module != balanced[b].module || balanced[a].layer_end - balanced[a].layer_begin < 2) continue;
        std::vector<schedule::Chunk> m = balanced;
        search::move_layer(m, a, b);
        CHECK(peak(m) >= after - 1e-9);
      }
  }
  // The LM head's rank ends up with fewer LLM layers than the most loaded other rank.
  std::vector<search::ModuleWeights> w(2);
  w[0] = {vision, std::vector<double>(24, 0.1)};
  w[1] = {llm, std::vector<double>(32, 1.0)};
  w[1].w.back() += 2.0;
  std::vector<schedule::Chunk> chunks = search::balanced_partition(model, w, std::vector<std::int32_t>{4, 8});
  search::place(chunks, 4, search::Placement::looped);
  search::balance_ranks(model, w, chunks, 4);
  std::vector<std::int32_t> llm_layers(4, 0);
  for (const auto& c : chunks)
    if (c.module == "llm") llm_layers[static_cast<std::size_t>(c.rank)] += c.layer_end - c.layer_begin;
  const std::int32_t head_rank = chunks.back().rank;
  CHECK(llm_layers[static_cast<std::size_t>(head_rank)] < *std::max_element(llm_layers.begin(), llm_layers.end()));
}

TEST_CASE("pipeweaver recomputation flags: set for a mode and read back", "[unit]") {
  Fixture f;
  std::vector<schedule::Chunk> chunks = pwtest::balanced_chunks(f.model, std::vector<spec::Batch>{llava_batch(8, 1)}, 8);
  CHECK(search::recompute_of(chunks, f.model) == search::Recompute::none);
  for (const search::Recompute r : {search::Recompute::encoders, search::Recompute::all, search::Recompute::none}) {
    search::set_recompute(chunks, f.model, r);
    CHECK(search::recompute_of(chunks, f.model) == r);
  }
  chunks.back().recompute = true;
  CHECK(search::recompute_of(chunks, f.model) == search::Recompute::selective);
  CHECK(std::string(search::to_string(search::Recompute::selective)) == "selective");
}

TEST_CASE("pipeweaver when memory is tight the search recomputes and still fits", "[unit]") {
  Fixture f;
  // Video samples on a device with little memory left for activations.
  spec::Batch b;
  for (int i = 0; i < 16; ++i) {
    spec::Sample s;
    s.text_tokens = 256;
    s.videos.push_back({8, 576});
    b.samples.push_back(s);
  }
  const std::vector<spec::Batch> trace = {b};
  search::SearchOptions o;
  o.time_budget_ms = 1e6;
  o.max_chunks_per_rank = 2;
  std::int64_t static_max = 0, act_max = 0;
  {
    search::Searcher probe(f.model, f.cluster, {}, nullptr, trace, o);
    const search::BatchResult r = probe.search(b);
    REQUIRE(r.best.recompute == search::Recompute::none);  // the roomy device needs none
    const cost::StepCosts c = probe.costs_of(r.best, b);
    for (std::size_t k = 0; k < c.static_bytes.size(); ++k) {
      static_max = std::max(static_max, c.static_bytes[k]);
      act_max = std::max(act_max, r.best.result.peak_mem_bytes[k] - c.static_bytes[k]);
    }
  }
  // A third of the activations that schedule kept at its peak.
  f.cluster.device.memory_bytes = static_cast<std::uint64_t>(static_max + act_max / 3);
  search::Searcher s(f.model, f.cluster, {}, nullptr, trace, o);
  const search::BatchResult r = s.search(b);
  CHECK(r.best.fits());
  CHECK(r.best.recompute != search::Recompute::none);
  CHECK_FALSE(schedule::find_problem(r.best.schedule).has_value());
  // What the schedule's flags say is what was scored.
  CHECK(search::recompute_of(r.best.schedule.chunks, f.model) == r.best.recompute);
  // `simulate`, from the schedule file, with its own cost model, agrees: same step, fits.
  check_replays(pwtest::config("models/llava-7b.json"), f.cluster, b, r.best);
}

TEST_CASE("pipeweaver balanced packing puts every sample in exactly one of m non-empty microbatches", "[unit]") {
  Fixture f;
  const spec::Batch b = llava_batch(40, 5);
  for (const std::int32_t m : {1, 4, 8, 40})
    for (const bool total_only : {false, true}) {
    const auto mbs = search::pack_balanced(f.model, b, m, total_only);
    REQUIRE(mbs.size() == static_cast<std::size_t>(m));
    std::set<std::int32_t> seen;
    for (const auto& mb : mbs) {
      CHECK_FALSE(mb.empty());
      for (const std::int32_t i : mb) CHECK(seen.insert(i).second);
    }
    CHECK(seen.size() == b.samples.size());
  }
  CHECK(pwtest::error_of([&] { search::pack_balanced(f.model, b, 41); }).find("cannot pack 40 samples") != std::string::npos);
  // Balancing compute beats packing in order by tokens on the heaviest microbatch's FLOPs.
  const auto flops = [&](const std::vector<std::vector<std::int32_t>>& mbs) {
    double worst = 0;
    for (const auto& mb : mbs) {
      double x = 0;
      for (const std::int32_t i : mb) x += f.model.forward_flops(b.samples[static_cast<std::size_t>(i)]);
      worst = std::max(worst, x);
    }
    return worst;
  };
  CHECK(flops(search::pack_balanced(f.model, b, 8)) <= flops(search::pack_contiguous(f.model, b, 8)));
  // Balancing the sum alone (largest first into the lightest): the heaviest microbatch is at
  // most the mean plus the heaviest sample.
  double sum = 0, biggest = 0;
  for (const spec::Sample& x : b.samples) {
    sum += f.model.forward_flops(x);
    biggest = std::max(biggest, f.model.forward_flops(x));
  }
  CHECK(flops(search::pack_balanced(f.model, b, 8, true)) <= sum / 8 + biggest);
  CHECK(flops(search::pack_balanced(f.model, b, 8, true)) <= flops(search::pack_balanced(f.model, b, 8)) + 1e-6 * sum);
}

TEST_CASE("pipeweaver order_by_work reorders microbatches by their work and keeps each intact", "[unit]") {
  Fixture f;
  const spec::Batch b = llava_batch(40, 5);
  const auto packing = search::pack_balanced(f.model, b, 10);
  const auto work = [&](const std::vector<std::int32_t>& mb) {
    double w = 0;
    for (const std::int32_t i : mb) w += f.model.forward_flops(b.samples[static_cast<std::size_t>(i)]);
    return w;
  };
  for (const bool heaviest : {true, false}) {
    const auto ordered = search::order_by_work(f.model, b, packing, heaviest);
    REQUIRE(ordered.size() == packing.size());
    CHECK(std::is_permutation(ordered.begin(), ordered.end(), packing.begin()));
    for (std::size_t k = 1; k < ordered.size(); ++k)
      CHECK((heaviest ? work(ordered[k - 1]) >= work(ordered[k]) : work(ordered[k - 1]) <= work(ordered[k])));
  }
}

TEST_CASE("pipeweaver interleaved baselines get a multiple of p microbatches", "[unit]") {
  Fixture f;
  std::vector<spec::Batch> trace = {llava_batch(37, 1), llava_batch(50, 2)};
  const cost::Device d = cost::Device::from(f.cluster.device);
  const search::BaselinePlan plan = search::plan_baselines(f.model, f.cluster, d, {}, trace, 2, 0);
  CHECK(plan.one_per_rank.size() == 4);
  CHECK(plan.interleaved.size() == 8);
  CHECK(plan.token_budget % 64 == 0);
  for (const auto& b : trace) {
    const auto mbs = search::baseline_packing(plan, f.model, b, true);
    CHECK(mbs.size() % 4 == 0);
    std::size_t n = 0;
    for (const auto& mb : mbs) n += mb.size();
    CHECK(n == b.samples.size());
    for (const auto* g : search::baseline_generators()) {
      const schedule::Schedule s = search::baseline_schedule(plan, *g, f.model, b);
      CHECK_FALSE(schedule::find_problem(s).has_value());
    }
  }
}

TEST_CASE("pipeweaver the search's picks fit, replay through simulate, and do not depend on the thread count",
          "[unit]") {
  Fixture f;
  std::vector<spec::Batch> trace = {llava_batch(32, 7), llava_batch(32, 8), llava_batch(32, 9, true)};
  for (std::size_t i = 0; i < trace.size(); ++i) trace[i].index = static_cast<std::int64_t>(i);
  search::SearchOptions o;
  o.time_budget_ms = 1e6;  // never cut: results must not depend on timing
  o.max_chunks_per_rank = 2;
  std::vector<std::int64_t> steps[2];
  std::vector<schedule::Schedule> picks[2];
  for (const std::int32_t threads : {1, 2}) {
    o.threads = threads;
    search::Searcher s(f.model, f.cluster, {}, nullptr, trace, o);
    for (const spec::Batch& b : trace) {
      const search::BatchResult r = s.search(b);
      CHECK(r.best.fits());
      CHECK_FALSE(schedule::find_problem(r.best.schedule).has_value());
      if (threads == 1) check_replays(pwtest::config("models/llava-7b.json"), f.cluster, b, r.best);
      steps[threads - 1].push_back(r.best.score_ns());
      picks[threads - 1].push_back(r.best.schedule);
    }
  }
  CHECK(steps[0] == steps[1]);
  CHECK(picks[0] == picks[1]);
}

TEST_CASE("pipeweaver on a batch of very unequal modality mix the search beats every baseline by over 10%",
          "[unit]") {
  // 32 samples: every eighth 8 images and a short prompt (vision-heavy), the rest 1,800
  // text tokens. Each baseline packs in order to a token budget and keeps one partition
  // (here balanced on this very batch); compute-balanced packing with more, thinner chunks
  // must win clearly. The baselines are candidates too, so only a strict margin shows the
  // search's own schedules at work: 10% (it found 19.6% when this test was written).
  Fixture f;
  spec::Batch b;
  for (int i = 0; i < 32; ++i) {
    spec::Sample x;
    x.text_tokens = i % 8 == 0 ? 40 : 1800;
    if (i % 8 == 0)
      for (int k = 0; k < 8; ++k) x.images.push_back({576, 1});
    b.samples.push_back(x);
  }
  const std::vector<spec::Batch> trace = {b};
  search::SearchOptions o;
  o.time_budget_ms = 1e6;
  search::Searcher s(f.model, f.cluster, {}, nullptr, trace, o);
  const search::BatchResult r = s.search(b);
  REQUIRE(r.best.fits());
  REQUIRE(r.baselines.size() == search::baseline_generators().size());
  for (const search::Evaluated& base : r.baselines) {
    INFO(base.method << " " << base.result.step_ns << " ns against " << r.best.score_ns() << " ns ("
                     << r.best.detail << ")");
    CHECK(static_cast<double>(base.result.step_ns) > 1.10 * static_cast<double>(r.best.score_ns()));
  }
  check_replays(pwtest::config("models/llava-7b.json"), f.cluster, b, r.best);
}

namespace {

// LLaVA's shapes cut to 2 vision layers and 4 LLM layers, as a model file in `dir`.
std::string tiny_llava(const testing::TempDir& dir) {
  common::Json m = common::load_json_file(pwtest::config("models/llava-7b.json"));
  for (auto& mod : m["modules"]) {
    if (mod["name"] == "vision") mod["layers"] = 2;
    if (mod["name"] == "llm") mod["layers"] = 4;
  }
  const std::string path = (dir / "tiny-llava.json").string();
  testing::write_text(path, m.dump());
  return path;
}

// Every cut of `layers` layers into `parts` non-empty contiguous runs, as the runs' ends.
std::vector<std::vector<std::int32_t>> cuts(std::int32_t layers, std::int32_t parts) {
  std::vector<std::vector<std::int32_t>> out;
  std::vector<std::int32_t> ends;
  std::function<void(std::int32_t)> go = [&](std::int32_t from) {
    if (static_cast<std::int32_t>(ends.size()) + 1 == parts) {
      ends.push_back(layers);
      out.push_back(ends);
      ends.pop_back();
      return;
    }
    for (std::int32_t e = from + 1; e < layers; ++e) {
      ends.push_back(e);
      go(e);
      ends.pop_back();
    }
  };
  go(0);
  return out;
}

// Every packing of n samples into 1 .. n ordered non-empty microbatches.
std::vector<std::vector<std::vector<std::int32_t>>> ordered_packings(std::int32_t n) {
  std::vector<std::vector<std::vector<std::int32_t>>> out;
  for (std::int32_t m = 1; m <= n; ++m) {
    std::int32_t codes = 1;
    for (std::int32_t i = 0; i < n; ++i) codes *= m;
    for (std::int32_t code = 0; code < codes; ++code) {  // sample i goes to microbatch digit i of code
      std::vector<std::vector<std::int32_t>> pk(static_cast<std::size_t>(m));
      for (std::int32_t i = 0, c = code; i < n; ++i, c /= m) pk[static_cast<std::size_t>(c % m)].push_back(i);
      if (std::none_of(pk.begin(), pk.end(), [](const auto& mb) { return mb.empty(); })) out.push_back(pk);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("pipeweaver on tiny cases the search finds the brute-force optimum or comes within 3%", "[slow]") {
  // 2 ranks, 2 vision + 4 LLM layers, 4 samples. Brute force over a superset of what the
  // search can pick: every cut of each module into chunks (2 to 4 chunks in all, at most 2
  // per rank, as the search is told), every assignment of the chunks to the ranks, every
  // packing of the samples into 1 to 4 ordered microbatches, each woven with each of the
  // search's four pass orders; and the four baselines' own schedules. The search cannot beat
  // that optimum (its picks are in the set) and must come within 3% of it (a heuristic over
  // a smaller space). 56,000 schedules: about a second in Release, a minute under the
  // sanitizers, hence [slow].
  testing::TempDir dir;
  const std::string model_file = tiny_llava(dir);
  const spec::ModelSpec model = spec::load_model(model_file);
  spec::ClusterSpec cluster = spec::load_cluster(pwtest::config("clusters/h100-80g-8x.json"));
  const std::int32_t p = 2;
  cluster.pipeline_size = p;
  const auto sample = [](std::int64_t text, int images) {
    spec::Sample x;
    x.text_tokens = text;
    for (int k = 0; k < images; ++k) x.images.push_back({576, 1});
    return x;
  };
  const std::vector<std::vector<spec::Sample>> batches = {
      {sample(1500, 0), sample(100, 2), sample(800, 1), sample(60, 0)},
      {sample(40, 3), sample(2000, 0), sample(300, 0), sample(30, 1)},
      {sample(512, 0), sample(512, 0), sample(512, 0), sample(512, 0)},
  };
  const std::vector<search::WeavePolicy> policies = {{true, search::ForwardOrder::breadth, 0, false},
                                                     {true, search::ForwardOrder::depth, 0, false},
                                                     {false, search::ForwardOrder::breadth, 0, false},
                                                     {true, search::ForwardOrder::breadth, 0, true}};
  const auto packings = ordered_packings(4);
  REQUIRE(packings.size() == 75);  // the ordered set partitions of 4 samples
  for (std::size_t bi = 0; bi < batches.size(); ++bi) {
    spec::Batch b;
    b.samples = batches[bi];
    const std::vector<spec::Batch> trace = {b};
    search::SearchOptions o;
    o.time_budget_ms = 1e6;
    o.max_chunks_per_rank = 2;
    search::Searcher searcher(model, cluster, {}, nullptr, trace, o);
    const search::BatchResult r = searcher.search(b);
    REQUIRE(r.best.fits());
    REQUIRE(r.best.switch_ns == 0);

    cost::CostModel cm(model, cluster);
    std::int64_t best = std::numeric_limits<std::int64_t>::max(), evaluated = 0;
    std::string best_text;
    const auto score = [&](schedule::Schedule s, const search::WeavePolicy* pol, const std::string& text) {
      const auto infos = cost::resolve_chunks(model, s, common::Where("brute force"), "");
      const cost::StepCosts c = cm.step_costs(s, infos, b);
      if (pol) search::weave(s, c, *pol);
      REQUIRE_FALSE(schedule::find_problem(s).has_value());
      const semu::Result res = semu::simulate(s, c);
      ++evaluated;
      if (!res.exceeds_memory && res.step_ns < best) {
        best = res.step_ns;
        best_text = text;
      }
    };
    for (const auto* g : search::baseline_generators())
      score(search::baseline_schedule(searcher.plan(), *g, model, b), nullptr, g->name);
    for (std::int32_t cv = 1; cv <= 2; ++cv)
      for (std::int32_t cl = 1; cl <= 4; ++cl) {
        const std::int32_t total = cv + cl;
        if (total < p || total > 2 * p) continue;
        for (const auto& ve : cuts(2, cv))
          for (const auto& le : cuts(4, cl)) {
            std::vector<schedule::Chunk> chunks;
            for (std::size_t k = 0; k < ve.size(); ++k)
              chunks.push_back({"vision", k ? ve[k - 1] : 0, ve[k], 0});
            for (std::size_t k = 0; k < le.size(); ++k)
              chunks.push_back({"llm", k ? le[k - 1] : 0, le[k], 0});
            for (std::int32_t on1 = 1; on1 + 1 < (1 << total); ++on1) {  // bit k: chunk k on rank 1
              const int n1 = __builtin_popcount(static_cast<unsigned>(on1));
              if (n1 > 2 || total - n1 > 2) continue;
              for (std::int32_t k = 0; k < total; ++k)
                chunks[static_cast<std::size_t>(k)].rank = (on1 >> k) & 1;
              for (const auto& pk : packings)
                for (const search::WeavePolicy& pol : policies) {
                  schedule::Schedule s;
                  s.n_ranks = p;
                  s.n_microbatches = static_cast<std::int32_t>(pk.size());
                  s.chunks = chunks;
                  s.microbatch_samples = pk;
                  score(std::move(s), &pol,
                        "woven, " + std::to_string(total) + " chunks, " + std::to_string(pk.size()) +
                            " microbatches");
                }
            }
          }
      }
    const double gap = static_cast<double>(r.best.result.step_ns) / static_cast<double>(best) - 1.0;
    INFO("batch " << bi << ": search " << r.best.result.step_ns << " ns (" << r.best.detail << "), optimum "
                  << best << " ns (" << best_text << ") of " << evaluated << " schedules: gap " << 100 * gap
                  << "%");
    CHECK(r.best.result.step_ns >= best);
    CHECK(gap <= 0.03);
  }
}

TEST_CASE("pipeweaver moving layers between batches is charged by bytes over the link", "[unit]") {
  Fixture f;
  const std::vector<spec::Batch> trace = {llava_batch(16, 1)};
  search::Searcher s(f.model, f.cluster, {}, nullptr, trace, {});
  std::vector<schedule::Chunk> a = {{"vision", 0, 24, 0}, {"llm", 0, 10, 1}, {"llm", 10, 21, 2}, {"llm", 21, 32, 3}};
  CHECK(s.switch_ns(a, a) == 0);
  CHECK(s.switch_ns({}, a) == 0);
  std::vector<schedule::Chunk> b = a;
  b[1].layer_end = 11;  // layer 10 moves from rank 2 to rank 1
  b[2].layer_begin = 11;
  const spec::Module& llm = f.model.llm();
  const double bytes = static_cast<double>(llm.layer_params()) * static_cast<double>(f.model.dtype_bytes + 12);
  const auto expect = static_cast<std::int64_t>(bytes / f.cluster.intra_node.bandwidth_bytes_per_s * 1e9);
  CHECK(std::llabs(s.switch_ns(a, b) - expect) <= 1);
}

TEST_CASE("pipeweaver recomputation keeps only layer inputs and reruns the forward before the backward", "[unit]") {
  Fixture f;
  const cost::Device d = cost::Device::from(f.cluster.device);
  cost::ModuleLoad load;
  load.seqs = {{577, 3}, {1024, 1}};
  load.tokens = 577 * 3 + 1024;
  for (const spec::Module& m : f.model.modules) {
    if (m.kind == spec::ModuleKind::projector) continue;
    cost::CostOptions plain, all, enc;
    all.recompute = true;
    enc.recompute_encoders = true;
    const cost::PassCost a = cost::layer_cost(d, m, load, f.model.dtype_bytes, plain);
    const cost::PassCost b = cost::layer_cost(d, m, load, f.model.dtype_bytes, all);
    const cost::PassCost e = cost::layer_cost(d, m, load, f.model.dtype_bytes, enc);
    INFO(m.name);
    CHECK(b.f_ns == a.f_ns);
    CHECK(std::llabs(b.i_ns - (a.i_ns + a.f_ns)) <= 1);
    CHECK(b.w_ns == a.w_ns);
    CHECK(b.act_bytes == f.model.dtype_bytes * m.layer.hidden * load.tokens);
    CHECK(b.act_w_bytes == a.act_w_bytes);
    CHECK(b.act_bytes < a.act_bytes);
    if (m.kind == spec::ModuleKind::encoder) CHECK(e == b);
    else CHECK(e == a);
  }
}
