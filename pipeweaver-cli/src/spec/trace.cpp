#include "spec/trace.hpp"

#include <sstream>

#include "spec/read.hpp"

namespace pipeweaver::spec {

using common::JsonView;

namespace {

constexpr double kMaxAudioSeconds = 86400.0;  // one clip longer than a day is a typo

ImageItem parse_image(const JsonView& v) {
  if (!v.is_object()) v.fail("an object {\"tokens\": N}");
  v.allow_only({"tokens", "tiles"});
  ImageItem im;
  im.tokens = detail::positive_count(v, "tokens");
  im.tiles = detail::positive_count_or(v, "tiles", 1);
  if (im.tokens % im.tiles != 0)
    v.at("tokens").fail("a multiple of tiles (" + std::to_string(im.tiles) + ")",
                        "each tile contributes tokens / tiles LLM tokens");
  return im;
}

VideoItem parse_video(const JsonView& v) {
  if (!v.is_object()) v.fail("an object {\"frames\": N, \"tokens_per_frame\": T}");
  v.allow_only({"frames", "tokens_per_frame"});
  VideoItem item;
  item.frames = detail::positive_count(v, "frames");
  item.tokens_per_frame = detail::positive_count(v, "tokens_per_frame");
  return item;
}

AudioItem parse_audio(const JsonView& v) {
  if (!v.is_object()) v.fail("an object {\"seconds\": S}");
  v.allow_only({"seconds"});
  return AudioItem{detail::positive_number(v, "seconds", kMaxAudioSeconds)};
}

template <class T, class F>
std::vector<T> parse_list(const JsonView& sample, std::string_view key, F parse_item) {
  std::vector<T> out;
  auto list = sample.find(key);
  if (!list) return out;
  if (!list->is_array()) list->fail("an array");
  for (const JsonView& item : list->items()) out.push_back(parse_item(item));
  return out;
}

Sample parse_sample(const JsonView& v) {
  if (!v.is_object()) v.fail("an object (a sample)");
  v.allow_only({"text_tokens", "images", "video", "audio"});
  Sample s;
  s.text_tokens = detail::count_value(v.at("text_tokens"), 0);
  s.images = parse_list<ImageItem>(v, "images", parse_image);
  s.videos = parse_list<VideoItem>(v, "video", parse_video);
  s.audios = parse_list<AudioItem>(v, "audio", parse_audio);
  if (s.text_tokens == 0 && s.images.empty() && s.videos.empty() && s.audios.empty())
    v.fail_message("a sample with no tokens: text_tokens is 0 and it has no images, video or audio");
  return s;
}

}  // namespace

Batch parse_batch(const JsonView& record, std::int64_t fallback_index) {
  if (!record.is_object()) record.fail("an object (one batch per line)");
  common::require_version(record, "pipeweaver trace", kTraceVersion, kTraceVersion);
  record.allow_only({"version", "batch", "samples"});
  Batch b;
  b.index = record.find("batch") ? detail::count_value(record.at("batch"), 0) : fallback_index;
  JsonView samples = record.at("samples");
  if (!samples.is_array() || samples.size() == 0) samples.fail("a non-empty array of samples");
  b.samples.reserve(samples.size());
  for (const JsonView& s : samples.items()) b.samples.push_back(parse_sample(s));
  return b;
}

void for_each_batch(const std::string& path, const std::function<void(const Batch&)>& fn) {
  std::int64_t count = 0;
  common::for_each_jsonl(path, [&](const JsonView& record) { fn(parse_batch(record, count++)); });
}

std::vector<Batch> load_trace(const std::string& path) {
  std::vector<Batch> out;
  for_each_batch(path, [&](const Batch& b) { out.push_back(b); });
  if (out.empty()) {
    common::Where where;
    where.file = path;
    throw common::InputError::message(
        where, "the trace holds no batches",
        "a trace has one JSON object per line; make one with 'pipeweaver-cli gen-trace'");
  }
  return out;
}

std::string batch_to_json_line(const Batch& batch) {
  std::ostringstream s;
  s << "{\"version\":" << kTraceVersion << ",\"batch\":" << batch.index << ",\"samples\":[";
  for (std::size_t i = 0; i < batch.samples.size(); ++i) {
    const Sample& sm = batch.samples[i];
    if (i) s << ',';
    s << "{\"text_tokens\":" << sm.text_tokens;
    if (!sm.images.empty()) {
      s << ",\"images\":[";
      for (std::size_t j = 0; j < sm.images.size(); ++j) {
        if (j) s << ',';
        s << "{\"tokens\":" << sm.images[j].tokens;
        if (sm.images[j].tiles != 1) s << ",\"tiles\":" << sm.images[j].tiles;
        s << '}';
      }
      s << ']';
    }
    if (!sm.videos.empty()) {
      s << ",\"video\":[";
      for (std::size_t j = 0; j < sm.videos.size(); ++j) {
        if (j) s << ',';
        s << "{\"frames\":" << sm.videos[j].frames
          << ",\"tokens_per_frame\":" << sm.videos[j].tokens_per_frame << '}';
      }
      s << ']';
    }
    if (!sm.audios.empty()) {
      s << ",\"audio\":[";
      for (std::size_t j = 0; j < sm.audios.size(); ++j) {
        if (j) s << ',';
        // nlohmann's own shortest round-trip formatting: the same text on every platform.
        s << "{\"seconds\":" << common::Json(sm.audios[j].seconds).dump() << '}';
      }
      s << ']';
    }
    s << '}';
  }
  s << "]}";
  return s.str();
}

void write_trace(std::ostream& out, const std::vector<Batch>& batches) {
  for (const Batch& b : batches) out << batch_to_json_line(b) << '\n';
}

}  // namespace pipeweaver::spec
