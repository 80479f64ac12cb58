#include "spec/mix.hpp"

#include <cmath>
#include <sstream>

#include "spec/read.hpp"

namespace pipeweaver::spec {

using common::JsonView;

namespace {

std::string fmt(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

// A number of the distribution: an integer in [lo, hi] for counts, else a number in [lo, hi].
double dist_number(const JsonView& v, bool integer, double lo, double hi) {
  if (integer)
    return static_cast<double>(
        v.as_int(static_cast<std::int64_t>(std::ceil(lo)), static_cast<std::int64_t>(hi)));
  return v.as_number(lo, hi);
}

double round_half_away(double x) {
  return x < 0 ? -std::floor(-x + 0.5) : std::floor(x + 0.5);
}

}  // namespace

// ---- Distribution --------------------------------------------------------------------

double Distribution::sample(Rng& rng) const {
  switch (kind) {
    case Kind::fixed:
      return value;
    case Kind::uniform:
      if (integer)
        return static_cast<double>(
            rng.uniform_int(static_cast<std::int64_t>(min), static_cast<std::int64_t>(max)));
      return min + (max - min) * rng.uniform01();
    case Kind::lognormal: {
      double x = median * det_exp(sigma * rng.normal());
      if (integer) x = round_half_away(x);
      return std::min(max, std::max(min, x));
    }
    case Kind::choice: {
      const double u = rng.uniform01() * cumulative.back();
      for (std::size_t i = 0; i < values.size(); ++i)
        if (u < cumulative[i]) return values[i];
      return values.back();
    }
  }
  return value;
}

Distribution parse_distribution(const JsonView& v, bool integer, double lo, double hi) {
  Distribution d;
  d.integer = integer;
  if (v.raw().is_number()) {
    d.kind = Distribution::Kind::fixed;
    d.value = dist_number(v, integer, lo, hi);
    return d;
  }
  if (!v.is_object())
    v.fail(
        "a number or a distribution object such as {\"dist\": \"lognormal\", \"median\": 200, \"sigma\": "
        "0.8}");
  const std::string kind = v.at("dist").as_enum({"fixed", "uniform", "lognormal", "choice"});
  if (kind == "fixed") {
    v.allow_only({"dist", "value"});
    d.kind = Distribution::Kind::fixed;
    d.value = dist_number(v.at("value"), integer, lo, hi);
  } else if (kind == "uniform") {
    v.allow_only({"dist", "min", "max"});
    d.kind = Distribution::Kind::uniform;
    d.min = dist_number(v.at("min"), integer, lo, hi);
    d.max = dist_number(v.at("max"), integer, lo, hi);
    if (d.max < d.min) v.at("max").fail("a number >= min (" + fmt(d.min) + ")");
  } else if (kind == "lognormal") {
    v.allow_only({"dist", "median", "sigma", "min", "max"});
    d.kind = Distribution::Kind::lognormal;
    d.median = v.at("median").as_positive_number();
    d.sigma = v.at("sigma").as_number(0.0, 4.0);
    d.min = v.find("min") ? dist_number(v.at("min"), integer, lo, hi) : lo;
    d.max = v.find("max") ? dist_number(v.at("max"), integer, lo, hi) : hi;
    if (d.max < d.min) v.at("max").fail("a number >= min (" + fmt(d.min) + ")");
  } else {
    v.allow_only({"dist", "values", "weights"});
    d.kind = Distribution::Kind::choice;
    JsonView values = v.at("values");
    if (!values.is_array() || values.size() == 0) values.fail("a non-empty array of values");
    for (const JsonView& x : values.items()) d.values.push_back(dist_number(x, integer, lo, hi));
    double total = 0.0;
    if (auto weights = v.find("weights")) {
      if (!weights->is_array() || weights->size() != d.values.size())
        weights->fail("an array of " + std::to_string(d.values.size()) + " weights (one per value)");
      for (const JsonView& w : weights->items()) d.cumulative.push_back(total += w.as_number(0.0, 1e12));
      if (!(total > 0.0)) weights->fail_message("the weights sum to 0; at least one must be positive");
    } else {
      for (std::size_t i = 0; i < d.values.size(); ++i) d.cumulative.push_back(total += 1.0);
    }
  }
  return d;
}

// ---- MixSpec -------------------------------------------------------------------------

int MixSpec::pick_category(Rng& rng) const {
  const double u = rng.uniform01() * cumulative_share.back();
  for (std::size_t i = 0; i < categories.size(); ++i)
    if (u < cumulative_share[i]) return static_cast<int>(i);
  for (std::size_t i = categories.size(); i-- > 0;)  // u rounded up to the total
    if (categories[i].share > 0.0) return static_cast<int>(i);
  return 0;
}

bool MixSpec::uses_images() const {
  for (const auto& c : categories)
    if (c.images.present && c.share > 0.0) return true;
  return false;
}

bool MixSpec::uses_video() const {
  for (const auto& c : categories)
    if (c.video.present && c.share > 0.0) return true;
  return false;
}

bool MixSpec::uses_audio() const {
  for (const auto& c : categories)
    if (c.audio.present && c.share > 0.0) return true;
  return false;
}

namespace {

constexpr double kMaxItems = 1000;     // images or clips per sample
constexpr double kMaxFrames = 100000;  // frames per video
constexpr double kMaxSeconds = 86400;  // seconds per audio clip
constexpr double kMaxTokens = static_cast<double>(detail::kMaxCount);

Distribution fixed_one() {
  Distribution d;
  d.value = 1.0;
  return d;
}

Category parse_category(const JsonView& v) {
  if (!v.is_object()) v.fail("an object (a sample category)");
  v.allow_only({"name", "share", "text_tokens", "images", "video", "audio"});
  Category c;
  c.name = v.at("name").as_string();
  if (c.name.empty()) v.at("name").fail("a non-empty category name");
  c.share = v.at("share").as_number(0.0, 1.0);
  c.text_tokens = parse_distribution(v.at("text_tokens"), true, 1, kMaxTokens);
  if (auto im = v.find("images")) {
    im->allow_only({"count", "tiles"});
    c.images.present = true;
    c.images.count = parse_distribution(im->at("count"), true, 1, kMaxItems);
    c.images.tiles =
        im->find("tiles") ? parse_distribution(im->at("tiles"), true, 1, kMaxItems) : fixed_one();
  }
  if (auto vid = v.find("video")) {
    vid->allow_only({"count", "frames"});
    c.video.present = true;
    c.video.count =
        vid->find("count") ? parse_distribution(vid->at("count"), true, 1, kMaxItems) : fixed_one();
    c.video.frames = parse_distribution(vid->at("frames"), true, 1, kMaxFrames);
  }
  if (auto au = v.find("audio")) {
    au->allow_only({"count", "seconds"});
    c.audio.present = true;
    c.audio.count = au->find("count") ? parse_distribution(au->at("count"), true, 1, kMaxItems) : fixed_one();
    c.audio.seconds = parse_distribution(au->at("seconds"), false, 0.01, kMaxSeconds);
  }
  return c;
}

}  // namespace

MixSpec parse_mix(const common::Json& doc, const std::string& file) {
  JsonView root = common::json_root(doc, file);
  common::require_version(root, "pipeweaver data mix", 1, 1);
  root.allow_only(
      {"version", "name", "notes", "context_limit", "overflow", "batch", "token_defaults", "categories"});
  MixSpec mix;
  mix.name = root.string_or("name", "");
  mix.notes = detail::notes_or_empty(root);
  mix.context_limit = detail::positive_count(root, "context_limit");
  if (auto o = root.find("overflow"))
    mix.overflow = o->as_enum({"truncate", "reject"}) == "truncate" ? Overflow::truncate : Overflow::reject;

  JsonView batch = root.at("batch");
  batch.allow_only({"samples", "tokens", "group_by", "group_fraction", "length_grouping"});
  if (batch.has("samples") == batch.has("tokens"))
    batch.fail_message(
        "give exactly one of \"samples\" (samples per batch) or \"tokens\" (an LLM-token budget)");
  mix.batch_samples = detail::positive_count_or(batch, "samples", 0);
  mix.batch_tokens = detail::positive_count_or(batch, "tokens", 0);
  if (mix.batch_tokens > 0 && mix.batch_tokens < mix.context_limit)
    batch.at("tokens").fail("a budget of at least context_limit (" + std::to_string(mix.context_limit) + ")",
                            "every sample must fit in one batch");
  if (auto g = batch.find("group_by"))
    mix.group_by = g->as_enum({"none", "category"}) == "category" ? GroupBy::category : GroupBy::none;
  if (auto f = batch.find("group_fraction")) {
    if (mix.group_by != GroupBy::category)
      f->fail_message("group_fraction applies to group_by \"category\" only");
    mix.group_fraction = f->as_number(0.0, 1.0);
  }
  if (auto lg = batch.find("length_grouping")) {
    mix.length_grouping = lg->as_int(0, 10000);
    if (mix.length_grouping > 1 && mix.batch_tokens > 0)
      lg->fail_message(
          "length grouping re-deals samples into batches of equal size; use \"samples\", not \"tokens\"");
  }

  if (auto td = root.find("token_defaults")) {
    td->allow_only({"image_tile", "video_frame", "audio_per_second", "encoder_weight"});
    TokenDefaults& t = mix.token_defaults;
    t.image_tile = detail::positive_count_or(*td, "image_tile", t.image_tile);
    t.video_frame = detail::positive_count_or(*td, "video_frame", t.video_frame);
    if (td->has("audio_per_second"))
      t.audio_per_second = detail::positive_number(*td, "audio_per_second", 10000.0);
    if (auto w = td->find("encoder_weight")) t.encoder_weight = w->as_number(0.0, 1000.0);
  }

  JsonView cats = root.at("categories");
  if (!cats.is_array() || cats.size() == 0) cats.fail("a non-empty array of sample categories");
  double total = 0.0;
  for (const JsonView& c : cats.items()) {
    Category cat = parse_category(c);
    for (const auto& other : mix.categories)
      if (other.name == cat.name) c.at("name").fail_message("duplicate category name '" + cat.name + "'");
    total += cat.share;
    mix.cumulative_share.push_back(total);
    mix.categories.push_back(std::move(cat));
  }
  if (std::fabs(total - 1.0) > 1e-6)
    cats.fail_message("the shares sum to " + fmt(total) + "; they must sum to 1");
  return mix;
}

MixSpec load_mix(const std::string& path) {
  return parse_mix(common::load_json_file(path), path);
}

}  // namespace pipeweaver::spec
