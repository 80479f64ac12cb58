#include "sim_setup.hpp"

#include <filesystem>

#include "common/errors.hpp"
#include "schedule/generators.hpp"
#include "search/packing.hpp"
#include "spec/trace.hpp"

namespace pipeweaver::cli {

void add_sim_options(CLI::App* cmd, SimArgs& a) {
  cmd->add_option("--model", a.model_path, "Model spec (JSON), e.g. configs/models/llava-7b.json")->required();
  cmd->add_option("--cluster", a.cluster_path, "Cluster spec (JSON), e.g. configs/clusters/h100-80g-8x.json")->required();
  cmd->add_option("--trace", a.trace_path, "Batch trace (JSON Lines) from gen-trace")->required();
  cmd->add_option("--schedule", a.schedule,
                  "A schedule JSON file, or a generator: " + schedule::generator_names() + " (any case)")
      ->required();
  cmd->add_option("--microbatches", a.microbatches,
                  "Generated schedules: split the batch in order into this many microbatches of about equal LLM "
                  "tokens (default: token-budget packing, as the search's baselines)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--chunks-per-rank", a.chunks_per_rank,
                  "Generated schedules: chunks (virtual stages) per rank (default 1; interleaved: 2)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--token-budget", a.token_budget,
                  "Generated schedules: pack samples in order into microbatches of at most this many LLM tokens "
                  "(default: the trace's mean tokens per batch / (4 x ranks), as the search's baselines)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  cmd->add_option("--device-profile", a.profile_path,
                  "Device profile (JSON, from `profile`): its efficiency curves replace the cluster's constants");
  cmd->add_flag("--no-flash-attention", a.no_flash, "Keep attention scores for the backward (no FlashAttention)");
  cmd->add_flag("--zero1", a.zero1, "Shard optimizer state over the cluster's data-parallel replicas (ZeRO-1)");
}

SimInputs load_inputs(const SimArgs& a) {
  SimInputs in{spec::load_model(a.model_path), spec::load_cluster(a.cluster_path), spec::load_trace(a.trace_path), {}, {}};
  if (!a.profile_path.empty()) in.profile = cost::load_device_profile(a.profile_path);
  in.options.flash_attention = !a.no_flash;
  in.options.zero1 = a.zero1;
  return in;
}

const spec::Batch& pick_batch(const SimInputs& in, const std::string& trace_path, std::int64_t index) {
  const auto n = static_cast<std::int64_t>(in.batches.size());
  if (index < 0 || index >= n)
    throw common::UsageError("--batch " + std::to_string(index) + ": " + trace_path + " has " + std::to_string(n) +
                                 " batch" + (n == 1 ? "" : "es"),
                             "give a batch index from 0 to " + std::to_string(n - 1));
  return in.batches[static_cast<std::size_t>(index)];
}

namespace {

bool looks_like_file(const std::string& s) {
  return s.find('/') != std::string::npos || s.find('.') != std::string::npos || std::filesystem::exists(s);
}

}  // namespace

void check_generator_flags(const schedule::GeneratorInfo& gen, const char* chunks_flag, std::int32_t chunks) {
  if (!gen.interleaved && chunks > 1)
    throw common::UsageError(std::string(chunks_flag) + " " + std::to_string(chunks) + ": " + gen.name +
                                 " runs one chunk per rank",
                             "use interleaved-1f1b for several chunks per rank");
}

search::BaselinePlan baseline_plan(const SimInputs& in, const schedule::GeneratorInfo& gen, std::int32_t chunks,
                                   std::int64_t token_budget) {
  const cost::Device device = cost::Device::from(in.cluster.device, in.profile ? &*in.profile : nullptr);
  return search::plan_baselines(in.model, in.cluster, device, in.options, in.batches,
                                chunks > 0 ? chunks : (gen.interleaved ? 2 : 1), token_budget);
}

ScheduleSource::ScheduleSource(const SimArgs& args, const SimInputs& in) : args_(args), in_(in) {
  const std::int32_t p = static_cast<std::int32_t>(in.cluster.pipeline_size);
  generator_ = schedule::find_generator(args.schedule);
  if (!generator_ && !looks_like_file(args.schedule))
    throw common::UsageError("--schedule " + args.schedule + ": not a schedule file, nor a generator (" +
                                 schedule::generator_names() + ")",
                             "give a schedule JSON file or one of: " + schedule::generator_names());
  if (generator_) {
    if (args.token_budget > 0 && args.microbatches > 0)
      throw common::UsageError("--token-budget and --microbatches both set", "give one of them");
    check_generator_flags(*generator_, "--chunks-per-rank", args.chunks_per_rank);
    plan_ = baseline_plan(in, *generator_, args.chunks_per_rank, args.token_budget);
    schedule::Schedule layout;
    layout.n_ranks = p;
    layout.chunks = generator_->interleaved ? plan_.interleaved : plan_.one_per_rank;
    chunks_ = cost::resolve_chunks(in.model, layout, common::Where("(generated schedule)"), args.model_path);
    const auto v = static_cast<std::int32_t>(layout.chunks.size()) / p;
    label_ = std::string(generator_->name) + " (" + std::to_string(v) + " chunk" + (v == 1 ? "" : "s") + " per rank)";
    return;
  }
  file_schedule_ = schedule::load_schedule(args.schedule);
  const schedule::Schedule& s = *file_schedule_;
  const common::Where where(args.schedule);
  if (s.n_ranks != p)
    throw common::InputError::message(where.with_pointer("/ranks"),
                                      "the schedule has " + std::to_string(s.n_ranks) + " ranks, the cluster " +
                                          in.cluster.name + " " + std::to_string(p) + " pipeline ranks");
  chunks_ = cost::resolve_chunks(in.model, s, where, args.model_path);
  label_ = std::filesystem::path(args.schedule).filename().string();
}

schedule::Schedule ScheduleSource::make(const spec::Batch& batch) const {
  if (generator_) return search::baseline_schedule(plan_, *generator_, in_.model, batch, args_.microbatches);
  schedule::Schedule s = *file_schedule_;
  search::assign_samples(s, in_.model, batch, common::Where(args_.schedule));
  return s;
}

}  // namespace pipeweaver::cli
