// gen-trace: draws a batch trace (JSON Lines) from a data-mix spec.
#include <iomanip>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/log.hpp"
#include "format.hpp"
#include "spec/mix.hpp"
#include "spec/model.hpp"
#include "spec/trace.hpp"
#include "spec/trace_gen.hpp"

namespace pipeweaver::cli {

namespace {

struct GenTraceArgs {
  std::string mix_path;
  std::string output;
  std::string model_path;
  std::int64_t batches = 100;
  std::uint64_t seed = 1;
  bool json = false;
};

common::Json summary_json(const GenTraceArgs& args, const spec::MixSpec& mix, const spec::ModelSpec* model,
                          const spec::GeneratedTrace& trace, const spec::TraceSummary& sum) {
  common::Json categories = common::Json::object();
  for (std::size_t i = 0; i < mix.categories.size(); ++i)
    categories[mix.categories[i].name] = trace.stats.samples_per_category[i];
  return common::Json{
      {"mix", mix.name},
      {"model", model ? common::Json(model->name) : common::Json(nullptr)},
      {"seed", args.seed},
      {"output", args.output},
      {"batches", sum.batches},
      {"samples", sum.samples},
      {"categories", categories},
      {"tokens",
       {{"text", sum.text_tokens},
        {"image", sum.image_tokens},
        {"video", sum.video_tokens},
        {"audio", sum.audio_tokens},
        {"llm", sum.llm_tokens}}},
      {"media",
       {{"images", sum.images},
        {"videos", sum.videos},
        {"audio_clips", sum.audio_clips},
        {"audio_seconds", sum.audio_seconds}}},
      {"batch_samples", {{"min", sum.min_batch_samples}, {"max", sum.max_batch_samples}}},
      {"batch_tokens", {{"min", sum.min_batch_tokens}, {"max", sum.max_batch_tokens}}},
      {"work",
       {{"unit", sum.work_unit},
        {"min", sum.min_batch_work},
        {"mean", sum.mean_batch_work},
        {"max", sum.max_batch_work}}},
      {"dynamicity", sum.dynamicity},
      {"truncated", trace.stats.truncated},
      {"rejected", trace.stats.rejected},
  };
}

void print_summary(const GenTraceArgs& args, const spec::MixSpec& mix, const spec::ModelSpec* model,
                   const spec::GeneratedTrace& trace, const spec::TraceSummary& sum) {
  using common::log_info;
  log_info("gen-trace: mix ", mix.name, ", seed ", args.seed, ", ", sum.batches, " batches -> ", args.output);
  std::string cats;
  for (std::size_t i = 0; i < mix.categories.size(); ++i) {
    const auto n = trace.stats.samples_per_category[i];
    cats +=
        (cats.empty() ? "" : ", ") + mix.categories[i].name + " " + std::to_string(n) + " (" +
        fixed(100.0 * static_cast<double>(n) / static_cast<double>(std::max<std::int64_t>(1, sum.samples)),
              1) +
        "%)";
  }
  log_info("  samples: ", sum.samples, " (", sum.min_batch_samples, "..", sum.max_batch_samples,
           " per batch): ", cats);
  log_info("  LLM tokens: ", sum.llm_tokens, " (", sum.min_batch_tokens, "..", sum.max_batch_tokens,
           " per batch): text ", sum.text_tokens, ", image ", sum.image_tokens, ", video ", sum.video_tokens,
           ", audio ", sum.audio_tokens);
  log_info("  media: ", sum.images, " images, ", sum.videos, " videos, ", sum.audio_clips, " audio clips (",
           fixed(sum.audio_seconds, 1), " s)");
  log_info("  context limit ", mix.context_limit, ": ", trace.stats.truncated, " samples truncated, ",
           trace.stats.rejected, " draws rejected");
  const std::string unit = model ? "forward TFLOP with " + model->name : "LLM-token equivalents, no --model";
  log_info("  work per batch (", unit, "): min ", fixed(sum.min_batch_work, 1), ", mean ",
           fixed(sum.mean_batch_work, 1), ", max ", fixed(sum.max_batch_work, 1));
  log_info("  dynamicity (heaviest / lightest batch work): ", fixed(sum.dynamicity, 2));
}

void run_gen_trace(const GenTraceArgs& args) {
  if (args.json && args.output == "-")
    throw common::UsageError("--json prints the summary on stdout, which -o - already uses for the trace",
                             "write the trace to a file with -o FILE");
  const spec::MixSpec mix = spec::load_mix(args.mix_path);
  std::optional<spec::ModelSpec> model;
  if (!args.model_path.empty()) model = spec::load_model(args.model_path);
  const spec::ModelSpec* model_ptr = model ? &*model : nullptr;
  const spec::TokenRules rules(mix, model_ptr);

  spec::GenOptions options;
  options.batches = args.batches;
  options.seed = args.seed;
  const spec::GeneratedTrace trace = spec::generate_trace(mix, rules, options, args.mix_path);

  common::AtomicOutput out(args.output);
  spec::write_trace(out.stream(), trace.batches);
  out.commit();

  const spec::TraceSummary sum = spec::summarize(trace.batches, rules);
  if (args.json)
    std::cout << summary_json(args, mix, model_ptr, trace, sum).dump() << std::endl;
  else
    print_summary(args, mix, model_ptr, trace, sum);
}

}  // namespace

void register_gen_trace(common::CliApp& cli) {
  auto args = std::make_shared<GenTraceArgs>();
  CLI::App* cmd = cli.add_command("gen-trace", "Draw a batch trace (JSON Lines) from a data-mix spec",
                                  [args] { run_gen_trace(*args); });
  cmd->add_option("--mix", args->mix_path, "Data-mix spec (JSON), e.g. configs/mixes/llava-instruct.json")
      ->required();
  cmd->add_option("-o,--output", args->output, "Trace file to write (JSON Lines); - for stdout")->required();
  cmd->add_option("--batches", args->batches, "Global batches to draw")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--seed", args->seed, "Random seed; the same seed gives the same trace on every platform")
      ->capture_default_str();
  cmd->add_option("--model", args->model_path,
                  "Model spec (JSON): media token counts follow its rules and work is its forward FLOPs");
  cmd->add_flag("--json", args->json,
                "Print the summary as one JSON object on stdout instead of text on stderr");
}

}  // namespace pipeweaver::cli
