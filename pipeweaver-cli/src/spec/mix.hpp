// The data-mix spec: what kinds of samples a training set holds (text-only, single-image,
// multi-image, video, audio, ...), their shares and length distributions, the context
// limit, and how samples form global batches. gen-trace draws batch traces from it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/json_io.hpp"
#include "spec/rng.hpp"

namespace pipeweaver::spec {

/// A simple parametric distribution of a count or a duration:
///   {"dist": "fixed", "value": v}            (or just the number v)
///   {"dist": "uniform", "min": a, "max": b}  (integers: every value in [a, b] equally likely)
///   {"dist": "lognormal", "median": m, "sigma": s, "min": a, "max": b}  (clipped to [a, b])
///   {"dist": "choice", "values": [...], "weights": [...]}               (weights optional)
struct Distribution {
  enum class Kind { fixed, uniform, lognormal, choice };
  Kind kind = Kind::fixed;
  bool integer = true;               // counts are rounded to the nearest integer (half away from zero)
  double value = 0.0;                // fixed
  double min = 0.0, max = 0.0;       // uniform range; lognormal clip range
  double median = 0.0, sigma = 0.0;  // lognormal: exp(N(ln median, sigma^2))
  std::vector<double> values;        // choice
  std::vector<double> cumulative;    // choice: running sums of the weights

  /// One draw. Integer distributions return whole numbers.
  double sample(Rng& rng) const;
  std::int64_t sample_int(Rng& rng) const { return static_cast<std::int64_t>(sample(rng)); }
};

/// Parses a distribution whose every possible value must lie in [lo, hi].
Distribution parse_distribution(const common::JsonView& v, bool integer, double lo, double hi);

struct ImagesSpec {
  bool present = false;
  Distribution count;  // images per sample
  Distribution tiles;  // tiles per image (each tile = one encoder pass); fixed 1 by default
};

struct VideoSpec {
  bool present = false;
  Distribution count;   // videos per sample; fixed 1 by default
  Distribution frames;  // frames per video
};

struct AudioSpec {
  bool present = false;
  Distribution count;    // clips per sample; fixed 1 by default
  Distribution seconds;  // seconds per clip (drawn to 0.01 s)
};

struct Category {
  std::string name;
  double share = 0.0;        // fraction of samples (or of batches, with group_by "category")
  Distribution text_tokens;  // text tokens per sample (prompt + response)
  ImagesSpec images;
  VideoSpec video;
  AudioSpec audio;
};

/// Stand-ins for a model's token rules when gen-trace runs without --model.
struct TokenDefaults {
  std::int64_t image_tile = 576;   // LLM tokens per image tile (LLaVA-1.5: (336/14)^2)
  std::int64_t video_frame = 144;  // LLM tokens per video frame (576 pooled 2x2)
  double audio_per_second = 25.0;  // LLM tokens per second of audio (Whisper 50/s pooled by 2)
  double encoder_weight = 0.5;     // encoder work per media token, in LLM-token units
};

enum class Overflow { truncate, reject };
enum class GroupBy { none, category };

struct MixSpec {
  std::string name;
  std::string notes;
  std::int64_t context_limit = 0;  // LLM tokens per sample
  Overflow overflow = Overflow::truncate;
  std::int64_t batch_samples = 0;  // samples per batch, or 0 when batch_tokens is used
  std::int64_t batch_tokens = 0;   // LLM-token budget per batch, or 0
  GroupBy group_by = GroupBy::none;
  double group_fraction = 1.0;       // group_by "category": share of a batch from its category
  std::int64_t length_grouping = 0;  // batches per length-sorted megabatch (0: off)
  TokenDefaults token_defaults;
  std::vector<Category> categories;
  std::vector<double> cumulative_share;  // running sums of the shares

  /// A category index drawn by share.
  int pick_category(Rng& rng) const;
  bool uses_images() const;
  bool uses_video() const;
  bool uses_audio() const;
};

MixSpec parse_mix(const common::Json& doc, const std::string& file);
MixSpec load_mix(const std::string& path);

}  // namespace pipeweaver::spec
