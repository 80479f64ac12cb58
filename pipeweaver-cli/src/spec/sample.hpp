// What a batch trace holds: global batches of samples, each sample a text part plus media
// items counted in tokens (see docs/formats.md, "Batch trace").
#pragma once

#include <cstdint>
#include <vector>

namespace pipeweaver::spec {

/// An image: `tokens` LLM tokens from its encoder, produced by `tiles` encoder passes
/// (tokens / tiles each; tiles > 1 for InternVL-style dynamic tiling).
struct ImageItem {
  std::int64_t tokens = 0;
  std::int64_t tiles = 1;
};

/// A video: `frames` encoder passes of `tokens_per_frame` LLM tokens each.
struct VideoItem {
  std::int64_t frames = 0;
  std::int64_t tokens_per_frame = 0;
};

/// An audio clip; the model turns seconds into mel frames, encoder tokens and LLM tokens.
struct AudioItem {
  double seconds = 0.0;
};

struct Sample {
  std::int64_t text_tokens = 0;
  std::vector<ImageItem> images;
  std::vector<VideoItem> videos;
  std::vector<AudioItem> audios;
  std::int32_t category = -1;  // data-mix category index while generating; not stored

  /// LLM tokens of the visual items (images + video), independent of any model.
  std::int64_t visual_tokens() const;
  std::int64_t image_tokens() const;
  std::int64_t video_tokens() const;
  double audio_seconds() const;
};

struct Batch {
  std::int64_t index = 0;  // position in its trace (0-based)
  std::vector<Sample> samples;
};

}  // namespace pipeweaver::spec
