// export: writes a schedule for other tools: PyTorch's pipelining CSV (the schedule alone),
// a Chrome trace or an SVG timeline of the emulated step (these need the costs: model,
// cluster, trace, batch). Outputs are atomic; "-o -" writes to stdout.
#include <deque>
#include <memory>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "cost/cost_model.hpp"
#include "export/chrome_trace.hpp"
#include "export/pytorch_csv.hpp"
#include "export/svg_timeline.hpp"
#include "semu/semu.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

namespace {

struct ExportArgs {
  std::vector<std::string> schedules;
  std::string format;
  std::string output;
  SimArgs sim;  // model, cluster, trace, profile, generator settings; sim.schedule unused
  std::int64_t batch = 0;
};

constexpr const char* kFormats = "pytorch-csv, chrome-trace, svg";

// What the costed formats need, named in one usage error.
void require_inputs(const ExportArgs& a, const std::string& why) {
  std::string missing;
  for (const auto& [flag, value] : {std::pair{"--model", &a.sim.model_path}, std::pair{"--cluster", &a.sim.cluster_path},
                                    std::pair{"--trace", &a.sim.trace_path}})
    if (value->empty()) missing += (missing.empty() ? "" : ", ") + std::string(flag);
  if (!missing.empty())
    throw common::UsageError(why + " needs --model, --cluster and --trace; missing " + missing,
                             "give the model, cluster and batch trace the step is costed on (and --batch I)");
}

// One schedule costed on the batch and played with its timeline.
struct Played {
  std::string label;
  schedule::Schedule schedule;
  cost::StepCosts costs;
  semu::Result result;
};

Played play(const SimArgs& args, const SimInputs& in, const spec::Batch& batch) {
  const ScheduleSource source(args, in);
  Played p{source.label(), source.make(batch), {}, {}};
  cost::CostModel model(in.model, in.cluster, in.options, in.profile ? &*in.profile : nullptr);
  p.costs = model.step_costs(p.schedule, source.chunks(), batch);
  p.result = semu::simulate(p.schedule, p.costs, {.record_timeline = true});
  return p;
}

void run_export(const ExportArgs& a) {
  if (a.format != "pytorch-csv" && a.format != "chrome-trace" && a.format != "svg")
    throw common::UsageError("--format " + a.format + ": unknown format", std::string("use one of: ") + kFormats);
  if (a.schedules.size() > 1 && a.format != "svg")
    throw common::UsageError("--format " + a.format + " takes one --schedule, got " + std::to_string(a.schedules.size()),
                             "only svg draws several schedules (one panel each)");

  if (a.format == "pytorch-csv" && !schedule::find_generator(a.schedules.front())) {
    // A schedule file: nothing else is needed.
    const schedule::Schedule s = schedule::load_schedule(a.schedules.front());
    common::write_file_atomic(a.output, exporting::to_pytorch_csv(s));
    return;
  }
  require_inputs(a, a.format == "pytorch-csv" ? "a generated schedule (--schedule " + a.schedules.front() + ")"
                                              : "--format " + a.format);
  const SimInputs in = load_inputs(a.sim);
  const spec::Batch& batch = pick_batch(in, a.sim.trace_path, a.batch);
  std::deque<SimArgs> per_schedule;  // ScheduleSource keeps a reference
  std::vector<Played> played;
  for (const std::string& name : a.schedules) {
    per_schedule.push_back(a.sim);
    per_schedule.back().schedule = name;
    if (a.format == "pytorch-csv") {
      const ScheduleSource source(per_schedule.back(), in);
      common::write_file_atomic(a.output, exporting::to_pytorch_csv(source.make(batch)));
      return;
    }
    played.push_back(play(per_schedule.back(), in, batch));
  }

  const std::string where = in.model.name + " on " + in.cluster.name + ", batch " + std::to_string(a.batch);
  if (a.format == "chrome-trace") {
    const Played& p = played.front();
    exporting::ChromeTraceInfo info;
    info.title = where + ", " + p.label;
    info.other = {{"model", in.model.name}, {"cluster", in.cluster.name}, {"schedule", p.label}, {"batch", a.batch}};
    exporting::write_chrome_trace(a.output, exporting::chrome_trace(p.schedule, p.costs, p.result, info));
    return;
  }
  std::vector<exporting::TimelinePanel> panels;
  for (const Played& p : played) panels.push_back({p.label, &p.schedule, &p.result});
  const std::string heading = where + " (" + std::to_string(batch.samples.size()) + " samples)";
  common::write_file_atomic(a.output, exporting::timeline_svg(panels, heading, exporting::TimelineStyle::of(in.model)));
}

}  // namespace

void register_export(common::CliApp& cli) {
  auto args = std::make_shared<ExportArgs>();
  CLI::App* cmd = cli.add_command(
      "export", "Write a schedule as a PyTorch pipelining CSV, or its emulated step as a Chrome trace or SVG timeline",
      [args] { run_export(*args); });
  SimArgs& s = args->sim;
  cmd->add_option("--schedule", args->schedules,
                  "A schedule JSON file, or a generator (" + schedule::generator_names() +
                      "); svg takes several (--schedule A --schedule B), one panel each")
      ->required();
  cmd->add_option("--format", args->format, std::string("Output format: ") + kFormats)->required();
  cmd->add_option("-o,--output", args->output, "Output file (- for stdout)")->required();
  cmd->add_option("--model", s.model_path, "Model spec (JSON): chrome-trace, svg and generated schedules");
  cmd->add_option("--cluster", s.cluster_path, "Cluster spec (JSON): chrome-trace, svg and generated schedules");
  cmd->add_option("--trace", s.trace_path, "Batch trace (JSON Lines): chrome-trace, svg and generated schedules");
  cmd->add_option("--batch", args->batch, "Batch index in the trace (0-based)")->capture_default_str();
  cmd->add_option("--microbatches", s.microbatches,
                  "Generated schedules: split the batch into this many microbatches (default: token-budget packing)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--chunks-per-rank", s.chunks_per_rank,
                  "Generated schedules: chunks per rank (default 1; interleaved: 2)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--device-profile", s.profile_path, "Device profile (JSON, from `profile`)");
}

}  // namespace pipeweaver::cli
