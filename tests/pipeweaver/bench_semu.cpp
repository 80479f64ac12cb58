// SEMU and cost-model throughput (a benchmark program, not a test; scripts/bench-semu.sh
// runs it). Times are this thread's CPU time (the cores are shared with other work).
//
//   bench_pipeweaver_semu --model M --cluster C --trace T --schedule GENERATOR|FILE
//                         [simulate's other options] [--batch I] [--min-seconds S] [--skip-trace]
//
// The schedule is made as `pipeweaver-cli simulate` makes it (pipeweaver-cli/sim_setup.cpp,
// built into this program too): a generator's is the search's baseline.
// - actions: one batch's step (its schedule and costs), played repeatedly:
//   semu_only                SEMU alone;
//   reuse_on                 cost (caches warm: the step was costed before) + SEMU;
//   reuse_on_result_cache    the same through the SEMU result cache (a repeated step: a hit);
//   result_cache_miss        the result cache on steps never seen (what a miss adds);
//   reuse_off                cost from scratch (every layer of every chunk) + SEMU;
//   candidates_on / _off     what a search does: per batch, candidate layer partitions
//                            (one boundary moved by 1-2 layers), each costed and played, from
//                            a cold cost model (reuse on: one model across all candidates).
// - trace: every batch of the trace costed and played in order, reuse off (no cache) and on
//   (fresh caches, then the cost caches and the result cache across batches); the two must
//   agree exactly.
#include <ctime>
#include <iostream>

#include <CLI/CLI.hpp>

#include "common/cli.hpp"
#include "common/errors.hpp"
#include "semu/result_cache.hpp"
#include "sim_setup.hpp"

using namespace pipeweaver;
using pipeweaver::cli::ScheduleSource;
using pipeweaver::cli::SimInputs;

namespace {

struct BenchArgs {
  cli::SimArgs sim;
  std::int64_t batch = 0;
  double min_seconds = 1.0;
  bool skip_trace = false;
};

// CPU time of this thread: the machine's cores are shared, so wall time overstates.
double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Runs fn until at least min_seconds of CPU time have passed (3 calls at least); returns
// CPU seconds per call.
template <class F>
double per_call(F&& fn, double min_seconds, std::int64_t& calls) {
  const double start = thread_cpu_s();
  calls = 0;
  do {
    fn();
    ++calls;
  } while (calls < 3 || thread_cpu_s() - start < min_seconds);
  return (thread_cpu_s() - start) / static_cast<double>(calls);
}

common::Json rate(double actions_per_call, double s_per_call, std::int64_t calls, const char* note) {
  return {{"actions_per_s", actions_per_call / s_per_call}, {"us_per_step", s_per_call * 1e6}, {"calls", calls},
          {"note", note}};
}

// Candidate layer partitions of `base`: the boundary between two neighbouring chunks of one
// module moved by 1 or 2 layers (model-layer tuning), `n` of them, deterministic.
std::vector<std::vector<schedule::Chunk>> candidate_layouts(const std::vector<schedule::Chunk>& base, int n) {
  std::vector<std::size_t> movable;  // boundary i | i + 1 inside one module
  for (std::size_t i = 0; i + 1 < base.size(); ++i)
    if (base[i].module == base[i + 1].module) movable.push_back(i);
  std::vector<std::vector<schedule::Chunk>> out{base};
  for (int j = 1; !movable.empty() && static_cast<int>(out.size()) < n; ++j) {
    auto c = base;
    const std::size_t i = movable[static_cast<std::size_t>(j * 7) % movable.size()];
    const std::int32_t shift = (j % 2 ? 1 : -1) * (1 + (j / 2) % 2);
    const std::int32_t end = c[i].layer_end + shift;
    if (end <= c[i].layer_begin || end >= c[i + 1].layer_end) continue;
    c[i].layer_end = c[i + 1].layer_begin = end;
    out.push_back(std::move(c));
  }
  return out;
}

void run_bench(const BenchArgs& a) {
  const SimInputs in = cli::load_inputs(a.sim);
  const spec::Batch& batch = cli::pick_batch(in, a.sim.trace_path, a.batch);
  const ScheduleSource source(a.sim, in);
  const schedule::Schedule s = source.make(batch);
  const cost::DeviceProfile* profile = in.profile ? &*in.profile : nullptr;
  const double actions = static_cast<double>(s.n_actions());

  cost::CostModel warm(in.model, in.cluster, in.options, profile);
  const cost::StepCosts costs = warm.step_costs(s, source.chunks(), batch);
  std::int64_t sink = 0, calls = 0;
  common::Json actions_json;
  const double semu_s = per_call([&] { sink += semu::simulate(s, costs).step_ns; }, a.min_seconds, calls);
  actions_json["semu_only"] = rate(actions, semu_s, calls, "SEMU alone");
  const double on_s = per_call([&] { sink += semu::simulate(s, warm.step_costs(s, source.chunks(), batch)).step_ns; },
                               a.min_seconds, calls);
  actions_json["reuse_on"] = rate(actions, on_s, calls, "cost (caches warm) + SEMU every time");
  semu::ResultCache results;
  const double cached_s = per_call(
      [&] { sink += results.simulate(s, warm.step_costs(s, source.chunks(), batch)).step_ns; }, a.min_seconds, calls);
  actions_json["reuse_on_result_cache"] =
      rate(actions, cached_s, calls, "cost (caches warm) + SEMU result reuse (a repeated step)");
  {
    semu::ResultCache fresh;
    cost::StepCosts varied = costs;
    std::int64_t k = 0;
    const double miss_s = per_call(
        [&] {
          varied.f_ns[0] = costs.f_ns[0] + ++k;  // never seen before
          sink += fresh.simulate(s, varied).step_ns;
        },
        a.min_seconds, calls);
    actions_json["result_cache_miss"] = rate(actions, miss_s, calls, "SEMU through the result cache, every step new");
    actions_json["result_cache_miss"]["overhead_us"] = (miss_s - semu_s) * 1e6;
    const double fp_s = per_call([&] { sink += static_cast<std::int64_t>(semu::fingerprint(s, costs) & 1); },
                                 a.min_seconds / 4, calls);
    actions_json["result_cache_miss"]["fingerprint_us"] = fp_s * 1e6;
  }
  const double off_s = per_call(
      [&] {
        cost::CostModel cold(in.model, in.cluster, in.options, profile);
        cold.set_reuse(false);
        sink += semu::simulate(s, cold.step_costs(s, source.chunks(), batch)).step_ns;
      },
      a.min_seconds, calls);
  actions_json["reuse_off"] = rate(actions, off_s, calls, "cost from scratch + SEMU");

  // Candidates: the first batches of the trace (from --batch on), each with the same
  // candidate layouts; schedules and chunk resolution are prepared outside the timing.
  if (source.generated()) {
    struct Cand {
      const spec::Batch* batch;
      schedule::Schedule s;
      std::vector<cost::ChunkInfo> chunks;
    };
    std::vector<Cand> cands;
    const std::size_t first = static_cast<std::size_t>(a.batch);
    for (std::size_t b = first; b < std::min(in.batches.size(), first + 8); ++b) {
      const schedule::Schedule sb = source.make(in.batches[b]);
      std::vector<schedule::Chunk> base = sb.chunks;
      for (auto& layout : candidate_layouts(base, 16)) {
        Cand c{&in.batches[b], sb, {}};
        c.s.chunks = std::move(layout);
        c.chunks = cost::resolve_chunks(in.model, c.s, common::Where("(candidate)"), "");
        cands.push_back(std::move(c));
      }
    }
    double cand_actions = 0;
    for (const Cand& c : cands) cand_actions += static_cast<double>(c.s.n_actions());
    std::int64_t layers_on = 0, layers_off = 0;
    double hit_rate = 0;
    for (const bool reuse : {true, false}) {
      const double t = per_call(
          [&] {
            cost::CostModel cm(in.model, in.cluster, in.options, profile);
            cm.set_reuse(reuse);
            for (const Cand& c : cands) sink += semu::simulate(c.s, cm.step_costs(c.s, c.chunks, *c.batch)).step_ns;
            (reuse ? layers_on : layers_off) = cm.stats().layers_costed;
            if (reuse) hit_rate = cm.stats().hit_rate();
          },
          a.min_seconds, calls);
      auto& j = actions_json[reuse ? "candidates_on" : "candidates_off"];
      j = rate(cand_actions, t, calls,
               reuse ? "candidate layouts of 8 batches, cold cost model, reuse on"
                     : "candidate layouts of 8 batches, reuse off");
      j["candidates"] = cands.size();
      j["us_per_candidate"] = t * 1e6 / static_cast<double>(cands.size());
      j["layers_costed"] = reuse ? layers_on : layers_off;
      if (reuse) j["chunk_hit_rate"] = hit_rate;
    }
  }

  common::Json out = {{"model", in.model.name},
                      {"cluster", in.cluster.name},
                      {"schedule", source.label()},
                      {"ranks", s.n_ranks},
                      {"stages", s.n_stages()},
                      {"microbatches", s.n_microbatches},
                      {"actions_per_step", s.n_actions()},
                      {"actions", actions_json}};

  if (!a.skip_trace) {
    // The whole trace, reuse off then on (each with a fresh cost model); schedules are made
    // outside the timing.
    std::vector<schedule::Schedule> schedules;
    double make_s = thread_cpu_s(), trace_actions = 0;
    for (const spec::Batch& b : in.batches) {
      schedules.push_back(source.make(b));
      trace_actions += static_cast<double>(schedules.back().n_actions());
    }
    make_s = thread_cpu_s() - make_s;
    std::vector<std::int64_t> steps_on, steps_off;
    common::Json trace_json;
    for (const bool reuse : {false, true}) {
      cost::CostModel cm(in.model, in.cluster, in.options, profile);
      cm.set_reuse(reuse);
      semu::ResultCache cache;
      double cost_s = 0, semu_s2 = 0;
      auto& steps = reuse ? steps_on : steps_off;
      for (std::size_t i = 0; i < in.batches.size(); ++i) {
        const schedule::Schedule& sb = schedules[i];
        double t0 = thread_cpu_s();
        const cost::StepCosts c = cm.step_costs(sb, source.chunks(), in.batches[i]);
        const double t1 = thread_cpu_s();
        cost_s += t1 - t0;
        steps.push_back(reuse ? cache.simulate(sb, c).step_ns : semu::simulate(sb, c).step_ns);
        semu_s2 += thread_cpu_s() - t1;
      }
      const cost::ReuseStats& st = cm.stats();
      trace_json[reuse ? "reuse_on" : "reuse_off"] = {{"cost_ms", cost_s * 1e3},
                                                      {"semu_ms", semu_s2 * 1e3},
                                                      {"total_ms", (cost_s + semu_s2) * 1e3},
                                                      {"actions_per_s", trace_actions / (cost_s + semu_s2)},
                                                      {"layers_costed", st.layers_costed},
                                                      {"chunk_hit_rate", st.hit_rate()},
                                                      {"spatial_hits", st.spatial_hits},
                                                      {"temporal_hits", st.temporal_hits},
                                                      {"result_cache_hits", reuse ? cache.hits() : 0}};
    }
    trace_json["batches"] = in.batches.size();
    trace_json["schedule_ms"] = make_s * 1e3;
    trace_json["identical"] = steps_on == steps_off;
    trace_json["cost_speedup"] = trace_json["reuse_off"]["cost_ms"].get<double>() /
                                 std::max(1e-9, trace_json["reuse_on"]["cost_ms"].get<double>());
    trace_json["total_speedup"] = trace_json["reuse_off"]["total_ms"].get<double>() /
                                  std::max(1e-9, trace_json["reuse_on"]["total_ms"].get<double>());
    out["trace"] = trace_json;
    if (steps_on != steps_off) throw common::InternalError("reuse changed a step time");
  }
  out["checksum"] = sink;
  std::cout << out.dump(2) << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  BenchArgs a;
  CLI::App app("SEMU and cost-model throughput on one schedule (scripts/bench-semu.sh)");
  cli::add_sim_options(&app, a.sim);
  app.add_option("--batch", a.batch, "Batch index for the actions benchmark");
  app.add_option("--min-seconds", a.min_seconds, "Time each actions measurement at least this long");
  app.add_flag("--skip-trace", a.skip_trace, "Only the actions benchmark");
  CLI11_PARSE(app, argc, argv);
  return common::run_guarded([&] { run_bench(a); });
}
