// bench-semu (hidden): SEMU and cost-model throughput for scripts/bench-semu.sh.
// - actions: one batch's schedule played repeatedly: SEMU alone; cost + SEMU with reuse
//   (warm cache); with reuse and the SEMU result cache; without reuse.
// Times are this thread's CPU time (the cores are shared with other work).
// - trace: every batch of the trace costed and played, reuse on (a fresh cache) and off;
//   the two must agree exactly.
#include <ctime>
#include <iostream>
#include <memory>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/timer.hpp"
#include "semu/result_cache.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

namespace {

struct BenchArgs {
  SimArgs sim;
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

void run_bench(const BenchArgs& a) {
  const SimInputs in = load_inputs(a.sim);
  const spec::Batch& batch = pick_batch(in, a.sim.trace_path, a.batch);
  const ScheduleSource source(a.sim, in);
  const schedule::Schedule s = source.make(batch);
  const cost::DeviceProfile* profile = in.profile ? &*in.profile : nullptr;
  const double actions = static_cast<double>(s.n_actions());

  cost::CostModel warm(in.model, in.cluster, in.options, profile);
  const semu::StepCosts costs = warm.step_costs(s, source.chunks(), batch);
  std::int64_t sink = 0, calls = 0;
  common::Json actions_json;
  const double semu_s = per_call([&] { sink += semu::simulate(s, costs).step_ns; }, a.min_seconds, calls);
  actions_json["semu_only"] = {{"actions_per_s", actions / semu_s}, {"us_per_step", semu_s * 1e6}, {"calls", calls}};
  const double on_s = per_call([&] { sink += semu::simulate(s, warm.step_costs(s, source.chunks(), batch)).step_ns; },
                               a.min_seconds, calls);
  actions_json["reuse_on"] = {{"actions_per_s", actions / on_s}, {"us_per_step", on_s * 1e6}, {"calls", calls},
                              {"note", "warm cost cache + SEMU every time"}};
  semu::ResultCache results;
  const double cached_s = per_call(
      [&] { sink += results.simulate(s, warm.step_costs(s, source.chunks(), batch)).step_ns; }, a.min_seconds, calls);
  actions_json["reuse_on_result_cache"] = {{"actions_per_s", actions / cached_s}, {"us_per_step", cached_s * 1e6},
                                           {"calls", calls}, {"note", "warm cost cache + SEMU result reuse (repeated batch)"}};
  const double off_s = per_call(
      [&] {
        cost::CostModel cold(in.model, in.cluster, in.options, profile);
        cold.set_reuse(false);
        sink += semu::simulate(s, cold.step_costs(s, source.chunks(), batch)).step_ns;
      },
      a.min_seconds, calls);
  actions_json["reuse_off"] = {{"actions_per_s", actions / off_s}, {"us_per_step", off_s * 1e6}, {"calls", calls}};

  common::Json out = {{"model", in.model.name},
                      {"cluster", in.cluster.name},
                      {"schedule", source.label()},
                      {"ranks", s.n_ranks},
                      {"stages", s.n_stages()},
                      {"microbatches", s.n_microbatches},
                      {"actions_per_step", s.n_actions()},
                      {"actions", actions_json}};

  if (!a.skip_trace) {
    // The whole trace, reuse off then on (each with a fresh cost model).
    std::vector<std::int64_t> steps_on, steps_off;
    common::Json trace_json;
    for (const bool reuse : {false, true}) {
      cost::CostModel cm(in.model, in.cluster, in.options, profile);
      cm.set_reuse(reuse);
      semu::ResultCache cache;
      double cost_s = 0, semu_s2 = 0, make_s = 0;
      auto& steps = reuse ? steps_on : steps_off;
      for (const spec::Batch& b : in.batches) {
        double t0 = thread_cpu_s();
        const schedule::Schedule sb = source.make(b);
        double t1 = thread_cpu_s();
        make_s += t1 - t0;
        const semu::StepCosts c = cm.step_costs(sb, source.chunks(), b);
        t0 = thread_cpu_s();
        cost_s += t0 - t1;
        steps.push_back(reuse ? cache.simulate(sb, c).step_ns : semu::simulate(sb, c).step_ns);
        semu_s2 += thread_cpu_s() - t0;
      }
      const cost::ReuseStats& st = cm.stats();
      trace_json[reuse ? "reuse_on" : "reuse_off"] = {{"cost_ms", cost_s * 1e3},
                                                      {"semu_ms", semu_s2 * 1e3},
                                                      {"total_ms", (cost_s + semu_s2) * 1e3},
                                                      {"schedule_ms", make_s * 1e3},
                                                      {"layers_costed", st.layers_costed},
                                                      {"chunk_hit_rate", st.hit_rate()},
                                                      {"spatial_hits", st.spatial_hits},
                                                      {"temporal_hits", st.temporal_hits}};
    }
    trace_json["batches"] = in.batches.size();
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

void register_bench_semu(common::CliApp& cli) {
  auto args = std::make_shared<BenchArgs>();
  CLI::App* cmd = cli.add_command("bench-semu", "", [args] { run_bench(*args); });
  cmd->group("");  // hidden: a benchmark driver for scripts/bench-semu.sh
  add_sim_options(cmd, args->sim);
  cmd->add_option("--batch", args->batch, "Batch index for the actions benchmark");
  cmd->add_option("--min-seconds", args->min_seconds, "Time each actions measurement at least this long");
  cmd->add_flag("--skip-trace", args->skip_trace, "Only the actions benchmark");
}

}  // namespace pipeweaver::cli
