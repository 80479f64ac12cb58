// The data-mix spec and trace generation: shipped mixes load, errors name fields,
// generation is deterministic, respects the context limit and the batch rules, and the
// shipped mixes show the dynamicity real training sees.
#include <algorithm>
#include <filesystem>
#include <map>

#include "spec/mix.hpp"
#include "spec/trace.hpp"
#include "spec/trace_gen.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver::spec;
using pwtest::config;
using pwtest::error_of;

namespace {

common::Json base_mix() {
  return common::Json::parse(R"({
    "version": 1, "name": "small", "context_limit": 4096,
    "batch": {"samples": 8},
    "categories": [
      {"name": "text", "share": 0.5, "text_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.8, "min": 1, "max": 4096}},
      {"name": "image", "share": 0.3, "text_tokens": 50, "images": {"count": {"dist": "uniform", "min": 1, "max": 3}}},
      {"name": "video", "share": 0.1, "text_tokens": 40, "video": {"frames": {"dist": "uniform", "min": 4, "max": 16}}},
      {"name": "audio", "share": 0.1, "text_tokens": 30, "audio": {"seconds": {"dist": "uniform", "min": 1, "max": 30}}}
    ]
  })");
}

std::string mix_error(const common::Json& doc) {
  return error_of([&] { parse_mix(doc, "mix.json"); });
}

GeneratedTrace gen(const MixSpec& mix, std::int64_t batches, std::uint64_t seed,
                   const ModelSpec* model = nullptr) {
  const TokenRules rules(mix, model);
  GenOptions options;
  options.batches = batches;
  options.seed = seed;
  return generate_trace(mix, rules, options, "mix.json");
}

std::string as_text(const std::vector<Batch>& batches) {
  std::string out;
  for (const Batch& b : batches) out += batch_to_json_line(b) + "\n";
  return out;
}

}  // namespace

TEST_CASE("pipeweaver mix: every shipped mix loads", "[unit]") {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator(testing::source_dir() / "configs" / "mixes")) {
    INFO(entry.path());
    const MixSpec m = load_mix(entry.path().string());
    CHECK(!m.categories.empty());
    CHECK(!m.notes.empty());
    ++n;
  }
  CHECK(n >= 3);
}

TEST_CASE("pipeweaver mix: errors name the field", "[unit]") {
  common::Json doc = base_mix();
  CHECK(mix_error(doc) == "(no error)");
  doc["version"] = 0;
  CHECK(mix_error(doc) == "mix.json: /version: expected a supported pipeweaver data mix version (1), got 0");

  doc = base_mix();
  doc["categories"][0]["share"] = 0.4;
  CHECK(mix_error(doc) == "mix.json: /categories: the shares sum to 0.9; they must sum to 1");

  doc = base_mix();
  doc["batch"]["tokens"] = 100000;
  CHECK(mix_error(doc) ==
        "mix.json: /batch: give exactly one of \"samples\" (samples per batch) or \"tokens\" (an LLM-token "
        "budget)");

  doc = base_mix();
  doc["batch"] = {{"tokens", 1000}};
  CHECK(mix_error(doc) ==
        "mix.json: /batch/tokens: expected a budget of at least context_limit (4096), got 1000");

  doc = base_mix();
  doc["batch"]["group_fraction"] = 0.5;
  CHECK(mix_error(doc) ==
        "mix.json: /batch/group_fraction: group_fraction applies to group_by \"category\" only");

  doc = base_mix();
  doc["categories"][1]["images"]["count"] = {{"dist", "uniform"}, {"min", 0}, {"max", 3}};
  CHECK(mix_error(doc) ==
        "mix.json: /categories/1/images/count/min: expected an integer in [1, 1000], got 0");

  doc = base_mix();
  doc["categories"][2]["video"]["fps"] = 2;
  CHECK(mix_error(doc) ==
        "mix.json: /categories/2/video/fps: unknown member; expected one of: count, frames");

  doc = base_mix();
  doc["categories"][3]["name"] = "text";
  CHECK(mix_error(doc) == "mix.json: /categories/3/name: duplicate category name 'text'");

  doc = base_mix();
  doc["context_limit"] = -5;
  CHECK(mix_error(doc) == "mix.json: /context_limit: expected a positive integer, got -5");

  doc = base_mix();
  doc["overflow"] = "drop";
  CHECK(mix_error(doc) == "mix.json: /overflow: expected one of truncate, reject, got the string \"drop\"");
}

TEST_CASE("pipeweaver gen: the same seed gives the same trace, another seed another", "[unit]") {
  const MixSpec mix = parse_mix(base_mix(), "mix.json");
  const std::string a = as_text(gen(mix, 20, 9).batches);
  CHECK(a == as_text(gen(mix, 20, 9).batches));
  CHECK(a != as_text(gen(mix, 20, 10).batches));
  // More batches extend the same sequence.
  const std::string longer = as_text(gen(mix, 30, 9).batches);
  CHECK(longer.substr(0, a.size()) == a);
}

TEST_CASE("pipeweaver gen: batches have the mix's size, shares and context limit", "[unit]") {
  const MixSpec mix = parse_mix(base_mix(), "mix.json");
  const GeneratedTrace t = gen(mix, 500, 1);
  REQUIRE(t.batches.size() == 500);
  const TokenRules rules(mix, nullptr);
  std::map<int, int> per_category;
  for (const Batch& b : t.batches) {
    REQUIRE(b.samples.size() == 8);
    for (const Sample& s : b.samples) {
      REQUIRE(rules.llm_tokens(s) <= 4096);
      ++per_category[s.category];
    }
  }
  CHECK(per_category[0] / 4000.0 == Approx(0.5).margin(0.03));
  CHECK(per_category[1] / 4000.0 == Approx(0.3).margin(0.03));
  CHECK(t.stats.samples_per_category[2] == per_category[2]);
  CHECK(t.batches[7].index == 7);
}

TEST_CASE("pipeweaver gen: over-long samples are truncated or redrawn", "[unit]") {
  common::Json doc = base_mix();
  doc["context_limit"] = 1000;
  const MixSpec truncating = parse_mix(doc, "mix.json");
  const GeneratedTrace t = gen(truncating, 200, 2);
  CHECK(t.stats.truncated > 0);
  CHECK(t.stats.rejected > 0);  // 2-3 images (1152+ tokens) never fit: drawn again
  const TokenRules rules(truncating, nullptr);
  for (const Batch& b : t.batches)
    for (const Sample& s : b.samples) {
      REQUIRE(rules.llm_tokens(s) <= 1000);
      REQUIRE(s.text_tokens >= 1);
    }

  doc["overflow"] = "reject";
  const MixSpec rejecting = parse_mix(doc, "mix.json");
  const GeneratedTrace r = gen(rejecting, 200, 2);
  CHECK(r.stats.truncated == 0);
  CHECK(r.stats.rejected > t.stats.rejected);

  doc["categories"][2]["video"]["frames"] = 20;  // 20 * 144 tokens can never fit 1000
  const MixSpec impossible = parse_mix(doc, "mix.json");
  CHECK(
      error_of([&] { gen(impossible, 50, 1); }) ==
      "mix.json: /categories/2: category 'video': 10000 draws in a row exceed context_limit 1000 LLM tokens");
}

TEST_CASE("pipeweaver gen: token budgets, category grouping and length grouping", "[unit]") {
  common::Json doc = base_mix();
  doc["batch"] = {{"tokens", 16384}};
  const MixSpec budget = parse_mix(doc, "mix.json");
  const TokenRules rules(budget, nullptr);
  for (const Batch& b : gen(budget, 50, 3).batches) {
    std::int64_t tokens = 0;
    for (const Sample& s : b.samples) tokens += rules.llm_tokens(s);
    REQUIRE(tokens <= 16384);
    REQUIRE(tokens > 16384 - 4096);  // the next sample did not fit
  }

  doc = base_mix();
  doc["batch"] = {{"samples", 8}, {"group_by", "category"}};
  const MixSpec grouped = parse_mix(doc, "mix.json");
  for (const Batch& b : gen(grouped, 50, 4).batches)
    for (const Sample& s : b.samples) REQUIRE(s.category == b.samples[0].category);

  doc = base_mix();
  doc["batch"] = {{"samples", 8}, {"length_grouping", 10}};
  const MixSpec sorted = parse_mix(doc, "mix.json");
  const TokenRules sorted_rules(sorted, nullptr);
  const GeneratedTrace t = gen(sorted, 10, 5);
  // One megabatch: every batch's samples are a contiguous run of the length-sorted pool,
  // so batch length ranges do not overlap.
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  for (const Batch& b : t.batches) {
    std::int64_t lo = INT64_MAX, hi = 0;
    for (const Sample& s : b.samples) {
      lo = std::min(lo, sorted_rules.llm_tokens(s));
      hi = std::max(hi, sorted_rules.llm_tokens(s));
    }
    ranges.emplace_back(lo, hi);
  }
  std::sort(ranges.begin(), ranges.end());
  for (std::size_t i = 1; i < ranges.size(); ++i) CHECK(ranges[i - 1].second <= ranges[i].first);
}

TEST_CASE("pipeweaver gen: with a model, media tokens follow the model", "[unit]") {
  const ModelSpec big = load_model(config("models/lmm-37b.json"));
  const MixSpec mix = load_mix(config("mixes/video-heavy.json"));
  const GeneratedTrace t = gen(mix, 5, 1, &big);
  for (const Batch& b : t.batches)
    for (const Sample& s : b.samples) {
      for (const ImageItem& im : s.images) REQUIRE(im.tokens == 256 * im.tiles);
      for (const VideoItem& v : s.videos) REQUIRE(v.tokens_per_frame == 256);
    }
  const ModelSpec llava = load_model(config("models/llava-7b.json"));
  const MixSpec audio = load_mix(config("mixes/audio-image.json"));
  CHECK(error_of([&] { TokenRules(audio, &llava); }) ==
        "model llava-1.5-7b: mix audio-image has audio samples but the model has no audio modality");
}

TEST_CASE("pipeweaver gen: generated traces parse back", "[unit]") {
  const MixSpec mix = load_mix(config("mixes/audio-image.json"));
  const GeneratedTrace t = gen(mix, 10, 1);
  testing::TempDir dir;
  const auto path = (dir / "t.jsonl").string();
  testing::write_text(path, as_text(t.batches));
  const std::vector<Batch> back = load_trace(path);
  REQUIRE(back.size() == 10);
  CHECK(as_text(back) == as_text(t.batches));
}

TEST_CASE("pipeweaver gen: shipped mixes show real dynamicity over 100 batches", "[unit]") {
  // Heaviest / lightest batch work >= 2.5 (the paper reports up to 4.15x for a 37B LMM),
  // with the rough no-model work and with each mix's natural model's forward FLOPs.
  struct Case {
    const char* mix;
    const char* model;
  };
  for (const Case c : {Case{"llava-instruct", "llava-7b"}, Case{"video-heavy", "lmm-37b"},
                       Case{"video-heavy", "llava-7b"}, Case{"audio-image", "audio-vision-7b"}}) {
    INFO(c.mix << " with " << c.model);
    const MixSpec mix = load_mix(config(std::string("mixes/") + c.mix + ".json"));
    const ModelSpec model = load_model(config(std::string("models/") + c.model + ".json"));
    for (std::uint64_t seed : {1, 2, 3}) {
      INFO("seed " << seed);
      const TokenRules rough(mix, nullptr);
      const TraceSummary s0 = summarize(gen(mix, 100, seed).batches, rough);
      CHECK(s0.dynamicity >= 2.5);
      const TokenRules flops(mix, &model);
      const TraceSummary s1 = summarize(gen(mix, 100, seed, &model).batches, flops);
      CHECK(s1.dynamicity >= 2.5);
      CHECK(s1.dynamicity <= 12.0);  // dynamic, not absurd
      CHECK(s1.work_unit == "TFLOP");
    }
  }
}
