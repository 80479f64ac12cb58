// schedule: writes one batch's schedule as JSON: a baseline exactly as `search` builds it
// (static partition balanced over the whole trace, token-budget packing), or PipeWeaver's
// searched schedule for that batch.
#include <algorithm>
#include <iostream>
#include <memory>
#include <thread>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "search/search.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

namespace {

struct ScheduleArgs {
  SimArgs sim;
  std::string kind;
  std::int64_t batch = 0;
  std::int32_t chunks = 0;
  std::int32_t microbatches = 0;
  std::string output;
  double time_budget_ms = 1000;
  std::int32_t threads = 1;
};

void run_schedule(const ScheduleArgs& a) {
  const SimInputs in = load_inputs(a.sim);
  const spec::Batch& batch = pick_batch(in, a.sim.trace_path, a.batch);
  schedule::Schedule s;
  if (a.kind == "pipeweaver") {
    if (a.microbatches > 0 || a.chunks > 0)
      throw common::UsageError("--kind pipeweaver chooses its own chunks and microbatches",
                               "drop --chunks and --microbatches, or use `search` for the whole trace");
    search::SearchOptions o;
    o.time_budget_ms = a.time_budget_ms;
    o.threads = a.threads;
    search::Searcher searcher(in.model, in.cluster, in.options, in.profile ? &*in.profile : nullptr, in.batches, o);
    s = searcher.search(batch).best.schedule;
  } else {
    const schedule::GeneratorInfo* gen = schedule::find_generator(a.kind);
    if (!gen)
      throw common::UsageError("--kind " + a.kind + ": unknown schedule",
                               "give one of: " + schedule::generator_names() + ", pipeweaver");
    check_generator_flags(*gen, "--chunks", a.chunks);
    s = search::baseline_schedule(baseline_plan(in, *gen, a.chunks, 0), *gen, in.model, batch, a.microbatches);
  }
  common::write_file_atomic(a.output, schedule::to_json(s).dump(1) + "\n");
  if (a.output != "-")
    std::cerr << "schedule: " << a.kind << " for batch " << a.batch << ": " << s.n_stages() << " stages on " << s.n_ranks
              << " ranks, " << s.n_microbatches << " microbatches -> " << a.output << "\n";
}

}  // namespace

void register_schedule(common::CliApp& cli) {
  auto a = std::make_shared<ScheduleArgs>();
  CLI::App* cmd = cli.add_command("schedule", "Write one batch's schedule (a baseline, or PipeWeaver's) as JSON",
                                  [a] { run_schedule(*a); });
  cmd->add_option("--kind", a->kind, "gpipe, 1f1b, interleaved-1f1b, zb-h1 or pipeweaver")->required();
  cmd->add_option("--model", a->sim.model_path, "Model spec (JSON)")->required();
  cmd->add_option("--cluster", a->sim.cluster_path, "Cluster spec (JSON)")->required();
  cmd->add_option("--trace", a->sim.trace_path, "Batch trace (JSON Lines); the baselines' partition is balanced over all of it")
      ->required();
  cmd->add_option("--batch", a->batch, "Batch index in the trace (0-based)")->capture_default_str();
  cmd->add_option("--chunks", a->chunks, "Interleaved 1F1B: chunks per rank (default 2)")->check(CLI::Range(1, 1024));
  cmd->add_option("--microbatches", a->microbatches,
                  "Split the batch into this many microbatches of about equal LLM tokens (default: the token budget)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("-o,--output", a->output, "Schedule JSON to write ('-' = stdout)")->required();
  cmd->add_option("--time-budget-ms", a->time_budget_ms, "pipeweaver: search time")->check(CLI::Range(1.0, 1e9));
  a->threads = static_cast<std::int32_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 256u));
  cmd->add_option("--threads", a->threads, "pipeweaver: worker threads (default: this machine's cores)")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--device-profile", a->sim.profile_path, "Device profile (JSON, from `profile`)");
  cmd->add_flag("--zero1", a->sim.zero1, "Shard optimizer state over the data-parallel replicas (ZeRO-1)");
}

}  // namespace pipeweaver::cli
