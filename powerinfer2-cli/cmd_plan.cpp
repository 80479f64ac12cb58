// `powerinfer2-cli plan -m MODEL.pi2.gguf (--memory-budget SIZE | --offload-ffn F) -o plan.json`:
// measures storage bandwidth and the engine on this machine and writes the chosen settings,
// which generate and bench take with --plan.
#include <cstdio>
#include <memory>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/units.hpp"
#include "prep/planner.hpp"
#include "sparse_cli.hpp"

namespace powerinfer2::cli {

namespace {
struct PlanCliOptions {
  std::string model, out;
  prep::PlanOptions plan;
};

void run_plan(const PlanCliOptions& o) {
  if (!o.plan.budget.limited()) throw common::UsageError("give one of --memory-budget and --offload-ffn");
  const prep::Plan p = prep::make_plan(o.model, o.plan);
  common::write_file_atomic(o.out, prep::plan_to_json(p));
  std::printf("| read size | QD 1 MB/s | QD 8 MB/s | QD 32 MB/s |\n| ---: | ---: | ---: | ---: |\n");
  for (std::size_t i = 0; i < p.reads.size(); ++i) {
    if (p.reads[i].queue_depth != 1) continue;
    std::printf("| %zu KiB |", p.reads[i].request_bytes / 1024);
    for (const prep::ReadPoint& r : p.reads)
      if (r.request_bytes == p.reads[i].request_bytes) std::printf(" %.0f |", r.bytes_per_s / 1e6);
    std::printf("\n");
  }
  std::printf("\n| cluster size | bytes | expected reads/token | read ms/token |\n| ---: | ---: | ---: | ---: |\n");
  for (const prep::ClusterChoice& c : p.clusters)
    std::printf("| %zu | %zu | %.1f | %.2f |\n", c.cluster_size, c.cluster_bytes, c.misses_per_token, c.read_ms_per_token);
  std::printf("\n| hot share | queue depth | decode tok/s |\n| ---: | ---: | ---: |\n");
  for (const prep::Trial& t : p.trials) std::printf("| %.2f | %u | %.2f |\n", t.hot_share, t.queue_depth, t.decode_tok_s);
  std::printf("\nmemory bandwidth %.1f GB/s, one bundle computed in %.0f ns (one thread)\n", p.memory_bytes_per_s / 1e9,
              p.neuron_ns);
  std::printf("\n%s: budget %s, hot share %.2f, queue depth %u, %zu threads (%s); the file's cluster size %zu, "
              "recommended %zu\n",
              o.out.c_str(), common::format_size(p.memory_budget_bytes).c_str(), p.hot_share, p.queue_depth, p.threads,
              p.io_backend.c_str(), p.cluster_size, p.recommended_cluster_size);
}
}  // namespace

void register_plan(common::CliApp& cli) {
  auto o = std::make_shared<PlanCliOptions>();
  CLI::App* cmd = cli.add_command("plan", "Measure this machine and choose the sparse engine's settings for a budget",
                                  [o] { run_plan(*o); });
  cmd->add_option("-m,--model", o->model, "Converted sparse model with predictors (.pi2.gguf)")->required();
  cmd->add_option("-o,--output", o->out, "Plan file to write (JSON)")->required();
  add_budget_options(cmd, o->plan.budget);
  cmd->add_option("-t,--threads", o->plan.threads, "Threads")->capture_default_str();
  cmd->add_option("-c,--ctx-size", o->plan.n_ctx, "Context for the trials")->capture_default_str();
  cmd->add_option("--trial-tokens", o->plan.trial_tokens, "Decoded tokens per trial")->capture_default_str();
}

}  // namespace powerinfer2::cli
