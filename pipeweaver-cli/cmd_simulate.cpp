// simulate: costs one batch's passes under a schedule and plays the step in SEMU; prints
// step time, bubble ratio, per-rank busy/idle/peak memory, P2P time and reuse hit rates.
#include <cstdio>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "common/timer.hpp"
#include "common/units.hpp"
#include "export/chrome_trace.hpp"
#include "format.hpp"
#include "semu/result_cache.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

namespace {

struct SimulateArgs {
  SimArgs sim;
  std::int64_t batch = 0;
  std::string chrome_trace;
  bool json = false;
  bool no_reuse = false;
};

void run_simulate(const SimulateArgs& a) {
  const SimInputs in = load_inputs(a.sim);
  const spec::Batch& batch = pick_batch(in, a.sim.trace_path, a.batch);
  const ScheduleSource source(a.sim, in);
  const schedule::Schedule s = source.make(batch);

  common::Stopwatch cost_watch;
  cost::CostModel model(in.model, in.cluster, in.options, in.profile ? &*in.profile : nullptr);
  model.set_reuse(!a.no_reuse);
  const cost::StepCosts costs = model.step_costs(s, source.chunks(), batch);
  const double cost_ms = cost_watch.elapsed_ms();

  common::Stopwatch sim_watch;
  semu::ResultCache results;
  const bool timeline = !a.chrome_trace.empty();
  const semu::Result r =
      a.no_reuse ? semu::simulate(s, costs, {.record_timeline = timeline}) : results.simulate(s, costs, {.record_timeline = timeline});
  const double sim_ms = sim_watch.elapsed_ms();

  if (timeline) {
    exporting::ChromeTraceInfo info;
    info.title = in.model.name + " on " + in.cluster.name + ", " + source.label() + ", batch " + std::to_string(a.batch);
    info.other = {{"model", in.model.name}, {"cluster", in.cluster.name}, {"schedule", source.label()}, {"batch", a.batch}};
    exporting::write_chrome_trace(a.chrome_trace, exporting::chrome_trace(s, costs, r, info));
  }

  const cost::ReuseStats& st = model.stats();
  if (a.json) {
    common::Json ranks = common::Json::array();
    for (std::size_t i = 0; i < r.busy_ns.size(); ++i)
      ranks.push_back({{"rank", i},
                       {"busy_ms", ms(r.busy_ns[i])},
                       {"idle_ms", ms(r.idle_ns[i])},
                       {"peak_mem_bytes", r.peak_mem_bytes[i]},
                       {"static_bytes", costs.static_bytes[i]},
                       {"capacity_bytes", costs.capacity_bytes[i]},
                       {"exceeds_memory", costs.capacity_bytes[i] > 0 && r.peak_mem_bytes[i] > costs.capacity_bytes[i]},
                       {"peak_act_microbatches", r.peak_act_microbatches[i]}});
    common::Json out = {
        {"model", in.model.name},
        {"cluster", in.cluster.name},
        {"batch", a.batch},
        {"samples", batch.samples.size()},
        {"schedule",
         {{"name", source.label()},
          {"ranks", s.n_ranks},
          {"stages", s.n_stages()},
          {"microbatches", s.n_microbatches},
          {"actions", r.n_actions}}},
        {"step_ms", ms(r.step_ns)},
        {"step_ns", r.step_ns},
        {"bubble_ratio", r.bubble_ratio},
        {"p2p_ms", ms(r.p2p_ns)},
        {"transfers", r.n_transfers},
        {"exceeds_memory", r.exceeds_memory},
        {"ranks", ranks},
        {"reuse",
         {{"enabled", !a.no_reuse},
          {"chunk_lookups", st.chunk_lookups},
          {"chunk_hits", st.chunk_hits},
          {"hit_rate", st.hit_rate()},
          {"spatial_hits", st.spatial_hits},
          {"temporal_hits", st.temporal_hits},
          {"layers_costed", st.layers_costed},
          {"semu_lookups", results.lookups()},
          {"semu_hits", results.hits()}}},
        {"timing", {{"cost_ms", cost_ms}, {"simulate_ms", sim_ms}}},
    };
    if (in.profile) out["device_profile"] = {{"type", in.profile->device_type}, {"name", in.profile->device_name}};
    std::cout << out.dump() << std::endl;
    return;
  }
  std::ostringstream o;
  o << "simulate: " << in.model.name << " on " << in.cluster.name << ", batch " << a.batch << " ("
    << batch.samples.size() << " samples in " << s.n_microbatches << " microbatches), " << source.label() << ": "
    << s.n_stages() << " stages on " << s.n_ranks << " ranks, " << r.n_actions << " actions\n";
  o << "  step time " << fixed(ms(r.step_ns), 3) << " ms, bubble ratio " << fixed(100.0 * r.bubble_ratio, 1)
    << "%, P2P " << fixed(ms(r.p2p_ns), 3) << " ms link time over " << r.n_transfers << " transfers\n";
  o << "  rank   busy ms     idle ms     peak memory   capacity\n";
  for (std::size_t i = 0; i < r.busy_ns.size(); ++i) {
    const bool over = costs.capacity_bytes[i] > 0 && r.peak_mem_bytes[i] > costs.capacity_bytes[i];
    o << "  " << std::setw(4) << std::left << i << std::right << std::setw(10) << fixed(ms(r.busy_ns[i]), 2)
      << std::setw(12) << fixed(ms(r.idle_ns[i]), 2) << std::setw(16)
      << common::format_size(static_cast<std::uint64_t>(r.peak_mem_bytes[i])) << std::setw(11)
      << common::format_size(static_cast<std::uint64_t>(costs.capacity_bytes[i])) << (over ? "  EXCEEDS CAPACITY" : "")
      << "\n";
  }
  if (r.exceeds_memory) o << "  warning: some rank's peak memory exceeds its device memory\n";
  o << "  reuse " << (a.no_reuse ? "off" : "on") << ": " << st.chunk_lookups << " chunk lookups, "
    << fixed(100.0 * st.hit_rate(), 1) << "% hits (spatial " << st.spatial_hits << ", temporal " << st.temporal_hits
    << "), " << st.layers_costed << " layers costed; cost " << fixed(cost_ms, 2) << " ms, SEMU " << fixed(sim_ms, 2)
    << " ms\n";
  if (timeline) o << "  chrome trace: " << a.chrome_trace << "\n";
  std::cout << o.str();
}

}  // namespace

void register_simulate(common::CliApp& cli) {
  auto args = std::make_shared<SimulateArgs>();
  CLI::App* cmd = cli.add_command("simulate", "Cost one batch under a schedule and emulate the training step (SEMU)",
                                  [args] { run_simulate(*args); });
  add_sim_options(cmd, args->sim);
  cmd->add_option("--batch", args->batch, "Batch index in the trace (0-based)")->capture_default_str();
  cmd->add_option("--chrome-trace", args->chrome_trace, "Write the step's timeline as a Chrome trace (JSON)");
  cmd->add_flag("--json", args->json, "Print one JSON object on stdout");
  cmd->add_flag("--no-reuse", args->no_reuse, "Cost every layer and microbatch afresh (results are identical)");
}

}  // namespace pipeweaver::cli
