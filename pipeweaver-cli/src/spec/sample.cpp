#include "spec/sample.hpp"

namespace pipeweaver::spec {

std::int64_t Sample::image_tokens() const {
  std::int64_t n = 0;
  for (const auto& im : images) n += im.tokens;
  return n;
}

std::int64_t Sample::video_tokens() const {
  std::int64_t n = 0;
  for (const auto& v : videos) n += v.frames * v.tokens_per_frame;
  return n;
}

std::int64_t Sample::visual_tokens() const {
  return image_tokens() + video_tokens();
}

double Sample::audio_seconds() const {
  double s = 0.0;
  for (const auto& a : audios) s += a.seconds;
  return s;
}

}  // namespace pipeweaver::spec
