#include "sim_setup.hpp"

#include <filesystem>
#include <set>

#include "common/errors.hpp"
#include "schedule/generators.hpp"
#include "spec/trace.hpp"

namespace pipeweaver::cli {

void add_sim_options(CLI::App* cmd, SimArgs& a) {
  cmd->add_option("--model", a.model_path, "Model spec (JSON), e.g. configs/models/llava-7b.json")->required();
  cmd->add_option("--cluster", a.cluster_path, "Cluster spec (JSON), e.g. configs/clusters/h100-80g-8x.json")->required();
  cmd->add_option("--trace", a.trace_path, "Batch trace (JSON Lines) from gen-trace")->required();
  cmd->add_option("--schedule", a.schedule,
                  "A schedule JSON file, or a generator: " + schedule::generator_names() + " (any case)")
      ->required();
  cmd->add_option("--microbatches", a.microbatches, "Generated schedules: microbatches (default 4 x ranks)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--chunks-per-rank", a.chunks_per_rank,
                  "Generated schedules: chunks (virtual stages) per rank (default 1; interleaved: 2)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--token-budget", a.token_budget,
                  "Generated schedules: pack samples in order into microbatches of at most this many LLM tokens "
                  "(instead of --microbatches)")
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

ScheduleSource::ScheduleSource(const SimArgs& args, const SimInputs& in) : args_(args), in_(in) {
  const std::int32_t p = static_cast<std::int32_t>(in.cluster.pipeline_size);
  generator_ = schedule::find_generator(args.schedule);
  if (!generator_ && !looks_like_file(args.schedule))
    throw common::UsageError("--schedule " + args.schedule + ": not a schedule file, nor a generator (" +
                                 schedule::generator_names() + ")",
                             "give a schedule JSON file or one of: " + schedule::generator_names());
  if (generator_) {
    const std::int32_t v = args.chunks_per_rank > 0 ? args.chunks_per_rank : (generator_->interleaved ? 2 : 1);
    if (!generator_->interleaved && v != 1)
      throw common::UsageError(std::string("--chunks-per-rank ") + std::to_string(v) + ": " + generator_->name +
                                   " runs one chunk per rank",
                               "use interleaved-1f1b for several chunks per rank");
    if (args.token_budget > 0 && args.microbatches > 0)
      throw common::UsageError("--token-budget and --microbatches both set", "give one of them");
    layout_ = cost::balanced_chunks(in.model, in.batches, p * v);
    schedule::Schedule probe;
    probe.n_ranks = p;
    probe.chunks = layout_;
    for (std::size_t c = 0; c < probe.chunks.size(); ++c) probe.chunks[c].rank = static_cast<std::int32_t>(c % static_cast<std::size_t>(p));
    chunks_ = cost::resolve_chunks(in.model, probe, common::Where("(generated schedule)"), args.model_path);
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
  const std::int32_t p = static_cast<std::int32_t>(in_.cluster.pipeline_size);
  if (!generator_) {
    schedule::Schedule s = *file_schedule_;
    const common::Where where(args_.schedule);
    const std::size_t n = batch.samples.size();
    if (s.microbatch_samples.empty()) {
      s.microbatch_samples = cost::pack_contiguous(in_.model, batch, s.n_microbatches);
      return s;
    }
    std::vector<int> seen(n, -1);
    for (std::size_t mb = 0; mb < s.microbatch_samples.size(); ++mb)
      for (std::size_t j = 0; j < s.microbatch_samples[mb].size(); ++j) {
        const std::int32_t i = s.microbatch_samples[mb][j];
        const std::string ptr = "/microbatch_samples/" + std::to_string(mb) + "/" + std::to_string(j);
        if (static_cast<std::size_t>(i) >= n)
          throw common::InputError::message(where.with_pointer(ptr), "sample " + std::to_string(i) +
                                                                          " does not exist (batch " +
                                                                          std::to_string(batch.index) + " has " +
                                                                          std::to_string(n) + " samples)");
        if (seen[static_cast<std::size_t>(i)] >= 0)
          throw common::InputError::message(where.with_pointer(ptr), "sample " + std::to_string(i) +
                                                                          " is already in microbatch " +
                                                                          std::to_string(seen[static_cast<std::size_t>(i)]));
        seen[static_cast<std::size_t>(i)] = static_cast<int>(mb);
      }
    for (std::size_t i = 0; i < n; ++i)
      if (seen[i] < 0)
        throw common::InputError::message(where.with_pointer("/microbatch_samples"),
                                          "sample " + std::to_string(i) + " of batch " + std::to_string(batch.index) +
                                              " is in no microbatch");
    return s;
  }
  std::vector<std::vector<std::int32_t>> packing;
  if (args_.token_budget > 0) {
    packing = cost::pack_token_budget(in_.model, batch, args_.token_budget);
  } else {
    const std::int32_t m = args_.microbatches > 0 ? args_.microbatches : 4 * p;
    packing = cost::pack_contiguous(in_.model, batch, m);
  }
  const std::int32_t m = static_cast<std::int32_t>(packing.size());
  if (generator_->interleaved && m % p != 0)
    throw common::UsageError(std::string(generator_->name) + " needs the microbatch count to be a multiple of the " +
                                 std::to_string(p) + " ranks, got " + std::to_string(m) +
                                 (args_.token_budget > 0 ? " from --token-budget" : ""),
                             "use --microbatches with a multiple of " + std::to_string(p));
  schedule::Schedule s = generator_->make(p, m, layout_);
  s.microbatch_samples = std::move(packing);
  return s;
}

}  // namespace pipeweaver::cli
