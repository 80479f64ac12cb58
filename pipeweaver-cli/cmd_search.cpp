// search: for every batch of a trace, PipeWeaver's schedule search against the baselines,
// all scored by the same cost model and SEMU; a summary table (or one JSON object), the
// chosen schedules as JSON Lines, and an optional visual report.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>
#include <thread>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/log.hpp"
#include "common/progress.hpp"
#include "common/timer.hpp"
#include "format.hpp"
#include "report.hpp"
#include "search/search.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

namespace {

struct SearchArgs {
  SimArgs sim;
  std::string output;
  std::string report_dir;
  std::vector<std::int64_t> report_batches;
  std::int64_t max_batches = 0;
  bool json = false;
  search::SearchOptions opt;
  bool no_recompute = false;
  bool no_switch_cost = false;
};

struct Series {
  std::vector<double> v;
  double mean() const {
    double s = 0;
    for (const double x : v) s += x;
    return v.empty() ? 0.0 : s / static_cast<double>(v.size());
  }
  double p50() const {
    if (v.empty()) return 0.0;
    std::vector<double> w = v;
    std::sort(w.begin(), w.end());
    const std::size_t n = w.size();
    return n % 2 ? w[n / 2] : 0.5 * (w[n / 2 - 1] + w[n / 2]);
  }
  double max() const { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); }
  double min() const { return v.empty() ? 0.0 : *std::min_element(v.begin(), v.end()); }
};

void run_search(SearchArgs& a) {
  const SimInputs in = load_inputs(a.sim);
  if (in.batches.empty()) throw common::UsageError(a.sim.trace_path + ": the trace has no batches");
  a.opt.allow_recompute = !a.no_recompute;
  a.opt.charge_switch = !a.no_switch_cost;
  std::size_t n = in.batches.size();
  if (a.max_batches > 0) n = std::min<std::size_t>(n, static_cast<std::size_t>(a.max_batches));
  for (const std::int64_t b : a.report_batches)
    if (b < 0 || static_cast<std::size_t>(b) >= n)
      throw common::UsageError("--report-batches " + std::to_string(b) + ": the search covers batches 0 to " +
                               std::to_string(n - 1));
  search::Searcher searcher(in.model, in.cluster, in.options, in.profile ? &*in.profile : nullptr, in.batches, a.opt);

  std::unique_ptr<common::AtomicOutput> out;
  if (!a.output.empty()) out = std::make_unique<common::AtomicOutput>(a.output);
  if (!a.report_dir.empty()) std::filesystem::create_directories(a.report_dir);
  std::vector<std::string> report_files;

  std::vector<std::string> methods = {"pipeweaver"};
  for (const auto* g : search::baseline_generators()) methods.emplace_back(g->name);
  std::vector<Series> step(methods.size());
  std::vector<std::int64_t> oom(methods.size(), 0);
  Series speedup, bound, search_ms;
  std::int64_t budget_hits = 0, switches = 0, candidates = 0;
  common::ProgressBar bar("search", n, !a.json && common::stderr_is_tty());
  for (std::size_t i = 0; i < n; ++i) {
    const spec::Batch& batch = in.batches[i];
    const search::BatchResult r = searcher.search(batch);
    step[0].v.push_back(ms(r.best.score_ns()));
    oom[0] += r.best.fits() ? 0 : 1;
    for (std::size_t j = 0; j < r.baselines.size(); ++j) {
      step[j + 1].v.push_back(ms(r.baselines[j].result.step_ns));
      oom[j + 1] += r.baselines[j].fits() ? 0 : 1;
    }
    const search::Evaluated& bb = r.baselines[r.best_baseline];
    speedup.v.push_back(static_cast<double>(bb.result.step_ns) / static_cast<double>(r.best.score_ns()));
    // What no schedule of PipeWeaver's work beats: every rank equally busy, no bubble.
    std::int64_t work_ns = 0;
    for (const std::int64_t b : r.best.result.busy_ns) work_ns += b;
    const double balanced_ms = ms(work_ns) / static_cast<double>(std::max<std::size_t>(1, r.best.result.busy_ns.size()));
    bound.v.push_back(ms(bb.result.step_ns) / balanced_ms);
    search_ms.v.push_back(r.search_ms);
    budget_hits += r.budget_hit ? 1 : 0;
    switches += r.best.switch_ns > 0 ? 1 : 0;
    candidates += r.candidates;
    common::log_verbose("batch " + std::to_string(batch.index) + ": pipeweaver " + fixed(ms(r.best.score_ns()), 1) +
                        " ms, bubble " + fixed(100 * r.best.result.bubble_ratio, 1) + "% (" + r.best.detail + "), best baseline " + bb.method + " " +
                        fixed(ms(bb.result.step_ns), 1) + " ms, bubble " + fixed(100 * bb.result.bubble_ratio, 1) + "%, " + std::to_string(r.candidates) + " candidates in " +
                        fixed(r.search_ms, 1) + " ms");
    if (out) {
      common::Json line = {{"batch", batch.index},
                           {"step_ms", ms(r.best.result.step_ns)},
                           {"switch_ms", ms(r.best.switch_ns)},
                           {"balanced_bound_ms", balanced_ms},
                           {"recompute", search::to_string(r.best.recompute)},
                           {"fits_memory", r.best.fits()},
                           {"how", r.best.detail},
                           {"best_baseline", {{"method", bb.method}, {"step_ms", ms(bb.result.step_ns)}}},
                           {"schedule", schedule::to_json(r.best.schedule)}};
      out->stream() << line.dump() << "\n";
    }
    const bool want_report = !a.report_dir.empty() &&
                             (a.report_batches.empty() ||
                              std::find(a.report_batches.begin(), a.report_batches.end(),
                                        static_cast<std::int64_t>(i)) != a.report_batches.end());
    if (want_report) {
      std::vector<std::string> files = write_batch_report(a.report_dir, in, searcher, batch, r);
      report_files.insert(report_files.end(), files.begin(), files.end());
    }
    bar.advance();
  }
  bar.finish();
  if (out) out->commit();

  const search::SearchStats st = searcher.stats();
  const double cand_per_s = st.eval_seconds > 0 ? static_cast<double>(st.candidates) / st.eval_seconds : 0.0;
  if (a.json) {
    common::Json m = common::Json::object();
    for (std::size_t j = 0; j < methods.size(); ++j)
      m[methods[j]] = {{"mean_step_ms", step[j].mean()},
                       {"p50_step_ms", step[j].p50()},
                       {"max_step_ms", step[j].max()},
                       {"batches_over_memory", oom[j]}};
    common::Json o = {{"model", in.model.name},
                      {"cluster", in.cluster.name},
                      {"batches", n},
                      {"methods", m},
                      {"speedup_vs_best_baseline", {{"mean", speedup.mean()}, {"max", speedup.max()}, {"min", speedup.min()}}},
                      {"speedup_bound", {{"mean", bound.mean()}, {"max", bound.max()}, {"min", bound.min()}}},
                      {"search_ms", {{"p50", search_ms.p50()}, {"max", search_ms.max()}, {"mean", search_ms.mean()}}},
                      {"time_budget_ms", a.opt.time_budget_ms},
                      {"budget_hits", budget_hits},
                      {"threads", a.opt.threads},
                      {"candidates", candidates},
                      {"candidates_per_s", cand_per_s},
                      {"reuse_hit_rate", st.hit_rate()},
                      {"partition_changes_charged", switches},
                      {"baseline_setup",
                       {{"token_budget", searcher.plan().token_budget},
                        {"interleaved_chunks_per_rank", searcher.plan().interleaved_chunks_per_rank}}}};
    if (!report_files.empty()) o["report_files"] = report_files;
    std::cout << o.dump() << std::endl;
    return;
  }
  std::ostringstream o;
  o << "search: " << in.model.name << " on " << in.cluster.name << " (" << in.cluster.pipeline_size << " ranks), "
    << n << " batch" << (n == 1 ? "" : "es") << "; baselines: static partition over the trace, " << searcher.plan().token_budget
    << " LLM tokens per microbatch, interleaved " << searcher.plan().interleaved_chunks_per_rank << " chunks per rank\n";
  o << "  method              mean ms      p50 ms      max ms   over memory\n";
  for (std::size_t j = 0; j < methods.size(); ++j)
    o << "  " << std::left << std::setw(18) << methods[j] << std::right << std::setw(10) << fixed(step[j].mean(), 1)
      << std::setw(12) << fixed(step[j].p50(), 1) << std::setw(12) << fixed(step[j].max(), 1) << std::setw(14) << oom[j]
      << "\n";
  o << "  speed-up of pipeweaver over the best baseline per batch: mean " << fixed(speedup.mean(), 3) << "x, max "
    << fixed(speedup.max(), 3) << "x, min " << fixed(speedup.min(), 3) << "x\n";
  o << "  bound: with its work spread evenly over the ranks and no bubble, pipeweaver's speed-up would be mean "
    << fixed(bound.mean(), 3) << "x, max " << fixed(bound.max(), 3) << "x\n";
  o << "  search time per batch: p50 " << fixed(search_ms.p50(), 1) << " ms, max " << fixed(search_ms.max(), 1)
    << " ms (budget " << fixed(a.opt.time_budget_ms, 0) << " ms, " << a.opt.threads << " thread"
    << (a.opt.threads == 1 ? "" : "s") << ", budget reached " << budget_hits << "x); " << candidates
    << " candidates, " << fixed(cand_per_s, 0) << " per second; cost reuse hit rate "
    << fixed(100.0 * st.hit_rate(), 1) << "%; partition changes charged: " << switches << "\n";
  if (!a.output.empty()) o << "  schedules: " << a.output << "\n";
  for (const std::string& f : report_files) o << "  report: " << f << "\n";
  std::cout << o.str();
}

}  // namespace

void register_search(common::CliApp& cli) {
  auto a = std::make_shared<SearchArgs>();
  CLI::App* cmd = cli.add_command("search", "Search a pipeline schedule for every batch and compare it with the baselines",
                                  [a] { run_search(*a); });
  cmd->add_option("--model", a->sim.model_path, "Model spec (JSON)")->required();
  cmd->add_option("--cluster", a->sim.cluster_path, "Cluster spec (JSON)")->required();
  cmd->add_option("--trace", a->sim.trace_path, "Batch trace (JSON Lines) from gen-trace")->required();
  cmd->add_option("-o,--output", a->output, "Write the chosen schedule of every batch (JSON Lines)");
  cmd->add_option("--report", a->report_dir, "Write SVG timelines (PipeWeaver above the best baseline) and Chrome traces here");
  cmd->add_option("--report-batches", a->report_batches, "Only these batches in the report (default: all)")->delimiter(',');
  cmd->add_flag("--json", a->json, "Print one JSON object on stdout");
  cmd->add_option("--batches", a->max_batches, "Search only the first N batches")->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  a->opt.threads = static_cast<std::int32_t>(std::clamp(std::thread::hardware_concurrency(), 1u, 256u));
  cmd->add_option("--threads", a->opt.threads, "Worker threads scoring candidates (default: this machine's cores)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  cmd->add_option("--time-budget-ms", a->opt.time_budget_ms, "Search time per batch")->check(CLI::Range(1.0, 1e9))->capture_default_str();
  cmd->add_option("--max-chunks-per-rank", a->opt.max_chunks_per_rank, "Most virtual stages per rank the search tries")
      ->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--baseline-chunks-per-rank", a->opt.baseline_chunks_per_rank, "Interleaved 1F1B baseline: chunks per rank")
      ->check(CLI::Range(1, 64))->capture_default_str();
  cmd->add_option("--token-budget", a->opt.token_budget,
                  "Baselines: LLM tokens per microbatch (default: the trace's mean tokens per batch / (4 x ranks))")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  cmd->add_option("--device-profile", a->sim.profile_path, "Device profile (JSON, from `profile`)");
  cmd->add_flag("--no-flash-attention", a->sim.no_flash, "Keep attention scores for the backward (no FlashAttention)");
  cmd->add_flag("--zero1", a->sim.zero1, "Shard optimizer state over the data-parallel replicas (ZeRO-1)");
  cmd->add_flag("--no-recompute", a->no_recompute, "Never fall back to full activation recomputation");
  cmd->add_flag("--no-switch-cost", a->no_switch_cost, "Do not charge for moving layers between batches");
}

}  // namespace pipeweaver::cli
