// Drawing batch traces from a data mix (gen-trace), and summarising a trace: tokens per
// modality and the dynamicity, the work of the heaviest batch over the lightest.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "spec/mix.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::spec {

/// How media items turn into LLM tokens, and what a sample's work is: the model's rules
/// and forward FLOPs when a model is given, else the mix's token_defaults and a rough work
/// in LLM-token equivalents: llm_tokens + encoder_weight * media_tokens.
class TokenRules {
 public:
  /// `model` may be null; when set it must outlive this object and have every modality the
  /// mix uses (InputError otherwise).
  TokenRules(const MixSpec& mix, const ModelSpec* model);

  const ModelSpec* model() const { return model_; }
  std::int64_t image_tokens_per_tile() const;
  std::int64_t video_tokens_per_frame() const;
  /// LLM tokens of one audio clip (special tokens excluded).
  std::int64_t audio_tokens(double seconds) const;
  /// LLM sequence length of a sample: text + media (+ the model's special tokens).
  std::int64_t llm_tokens(const Sample& sample) const;
  /// LLM tokens of the media alone.
  std::int64_t media_tokens(const Sample& sample) const;
  /// Forward FLOPs (with a model) or LLM-token equivalents (without).
  double work(const Sample& sample) const;
  /// "TFLOP" or "token-equivalents"; work() / work_scale() is in this unit.
  const char* work_unit() const { return model_ ? "TFLOP" : "token-equivalents"; }
  double work_scale() const { return model_ ? 1e12 : 1.0; }

 private:
  TokenDefaults defaults_;
  const ModelSpec* model_;
};

struct GenOptions {
  std::int64_t batches = 100;
  std::uint64_t seed = 1;
};

struct GenStats {
  std::vector<std::int64_t> samples_per_category;
  std::int64_t truncated = 0;  // samples whose text was cut to fit the context limit
  std::int64_t rejected = 0;   // draws dropped (too long) and drawn again
};

struct GeneratedTrace {
  std::vector<Batch> batches;  // Sample::category set
  GenStats stats;
};

/// Draws `options.batches` global batches. Deterministic: the same mix, rules and seed
/// give the same batches on every platform; a run with more batches extends the same
/// sequence. InputError (naming the mix) when a category cannot fit the context limit.
GeneratedTrace generate_trace(const MixSpec& mix, const TokenRules& rules, const GenOptions& options,
                              const std::string& mix_file);

struct TraceSummary {
  std::int64_t batches = 0;
  std::int64_t samples = 0;
  std::int64_t text_tokens = 0;  // LLM tokens by source
  std::int64_t image_tokens = 0;
  std::int64_t video_tokens = 0;
  std::int64_t audio_tokens = 0;
  std::int64_t llm_tokens = 0;  // everything the LLM sees (special tokens included)
  std::int64_t images = 0, videos = 0, audio_clips = 0;
  double audio_seconds = 0.0;
  std::int64_t min_batch_samples = 0, max_batch_samples = 0;
  std::int64_t min_batch_tokens = 0, max_batch_tokens = 0;
  double min_batch_work = 0.0, mean_batch_work = 0.0, max_batch_work = 0.0;  // in work_unit
  std::string work_unit;
  /// Heaviest batch work / lightest batch work.
  double dynamicity = 0.0;
};

TraceSummary summarize(const std::vector<Batch>& batches, const TokenRules& rules);

}  // namespace pipeweaver::spec
