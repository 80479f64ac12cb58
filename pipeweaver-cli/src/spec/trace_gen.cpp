#include "spec/trace_gen.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>

namespace pipeweaver::spec {

// ---- TokenRules ----------------------------------------------------------------------

TokenRules::TokenRules(const MixSpec& mix, const ModelSpec* model)
    : defaults_(mix.token_defaults), model_(model) {
  if (!model_) return;
  auto require = [&](bool used, bool present, const char* what) {
    if (used && !present) {
      common::Where w;
      w.item = "model " + model_->name;
      throw common::InputError::message(
          w,
          std::string("mix ") + mix.name + " has " + what + " samples but the model has no " + what +
              " modality",
          std::string("use a model with \"") + what + "\" under \"modalities\", or draw the trace without a model");
    }
  };
  require(mix.uses_images(), model_->image.present, "image");
  require(mix.uses_video(), model_->video.present, "video");
  require(mix.uses_audio(), model_->audio.present, "audio");
}

std::int64_t TokenRules::image_tokens_per_tile() const {
  return model_ ? model_->image_tokens_per_tile() : defaults_.image_tile;
}

std::int64_t TokenRules::video_tokens_per_frame() const {
  return model_ ? model_->video_tokens_per_frame() : defaults_.video_frame;
}

std::int64_t TokenRules::audio_tokens(double seconds) const {
  if (model_) return model_->audio_shape(seconds).llm_tokens;
  return std::max<std::int64_t>(
      1, static_cast<std::int64_t>(std::ceil(seconds * defaults_.audio_per_second - 1e-9)));
}

std::int64_t TokenRules::media_tokens(const Sample& sample) const {
  if (model_) return model_->llm_tokens(sample) - sample.text_tokens;
  std::int64_t n = sample.visual_tokens();
  for (const AudioItem& a : sample.audios) n += audio_tokens(a.seconds);
  return n;
}

std::int64_t TokenRules::llm_tokens(const Sample& sample) const {
  return model_ ? model_->llm_tokens(sample) : sample.text_tokens + media_tokens(sample);
}

double TokenRules::work(const Sample& sample) const {
  if (model_) return model_->forward_flops(sample);
  const double media = static_cast<double>(media_tokens(sample));
  return static_cast<double>(sample.text_tokens) + media * (1.0 + defaults_.encoder_weight);
}

// ---- generation ----------------------------------------------------------------------

namespace {

constexpr int kMaxDrawsPerSample = 10000;

class Generator {
 public:
  Generator(const MixSpec& mix, const TokenRules& rules, std::uint64_t seed, const std::string& mix_file)
      : mix_(mix), rules_(rules), rng_(seed), file_(mix_file) {
    stats_.samples_per_category.assign(mix.categories.size(), 0);
    pending_.resize(mix.categories.size());
  }

  GeneratedTrace run(std::int64_t n_batches) {
    GeneratedTrace out;
    const std::int64_t per_mega = std::max<std::int64_t>(1, mix_.length_grouping);
    while (static_cast<std::int64_t>(out.batches.size()) < n_batches) {
      std::vector<Batch> mega;
      std::vector<int> keys;  // the batch's category under group_by "category", else -1
      for (std::int64_t k = 0; k < per_mega; ++k) {
        const int key = mix_.group_by == GroupBy::category ? mix_.pick_category(rng_) : -1;
        mega.push_back(fill_batch(key));
        keys.push_back(key);
      }
      if (per_mega > 1) regroup_by_length(mega, keys);
      for (auto& b : mega) {
        if (static_cast<std::int64_t>(out.batches.size()) == n_batches) break;
        b.index = static_cast<std::int64_t>(out.batches.size());
        for (const Sample& s : b.samples) ++stats_.samples_per_category[static_cast<std::size_t>(s.category)];
        out.batches.push_back(std::move(b));
      }
    }
    out.stats = stats_;
    return out;
  }

 private:
  Batch fill_batch(int key) {
    Batch b;
    if (mix_.batch_samples > 0) {
      b.samples.reserve(static_cast<std::size_t>(mix_.batch_samples));
      for (std::int64_t i = 0; i < mix_.batch_samples; ++i) b.samples.push_back(draw(category_for(key)));
      return b;
    }
    // Token budget: add samples while they fit; the first that does not starts the next
    // batch of its kind (a packer carries it over rather than dropping it).
    std::int64_t used = 0;
    for (;;) {
      const std::size_t slot = key >= 0 ? static_cast<std::size_t>(key) : 0;
      Sample s = pending_[slot] ? std::move(*pending_[slot]) : draw(category_for(key));
      pending_[slot].reset();
      const std::int64_t tokens = rules_.llm_tokens(s);
      if (!b.samples.empty() && used + tokens > mix_.batch_tokens) {
        pending_[slot] = std::move(s);
        return b;
      }
      used += tokens;
      b.samples.push_back(std::move(s));
    }
  }

  // The category of the next sample of a batch whose category is `key` (-1: none): the
  // batch's own with probability group_fraction, else one drawn by share.
  int category_for(int key) {
    if (key < 0) return mix_.pick_category(rng_);
    if (mix_.group_fraction >= 1.0 || rng_.uniform01() < mix_.group_fraction) return key;
    return mix_.pick_category(rng_);
  }

  Sample draw_once(int category) {
    const Category& c = mix_.categories[static_cast<std::size_t>(category)];
    Sample s;
    s.category = category;
    s.text_tokens = c.text_tokens.sample_int(rng_);
    if (c.images.present) {
      const std::int64_t n = c.images.count.sample_int(rng_);
      for (std::int64_t i = 0; i < n; ++i) {
        const std::int64_t tiles = c.images.tiles.sample_int(rng_);
        s.images.push_back({tiles * rules_.image_tokens_per_tile(), tiles});
      }
    }
    if (c.video.present) {
      const std::int64_t n = c.video.count.sample_int(rng_);
      for (std::int64_t i = 0; i < n; ++i)
        s.videos.push_back({c.video.frames.sample_int(rng_), rules_.video_tokens_per_frame()});
    }
    if (c.audio.present) {
      const std::int64_t n = c.audio.count.sample_int(rng_);
      for (std::int64_t i = 0; i < n; ++i) {
        // Whole centiseconds, so the trace prints short, exact-looking numbers.
        const double cs = std::max(1.0, std::floor(c.audio.seconds.sample(rng_) * 100.0 + 0.5));
        s.audios.push_back({cs / 100.0});
      }
    }
    return s;
  }

  // A sample that fits the context limit: text truncated (overflow "truncate") when the
  // media alone fit, otherwise drawn again, as real packers drop over-long samples.
  Sample draw(int category) {
    for (int attempt = 0; attempt < kMaxDrawsPerSample; ++attempt) {
      Sample s = draw_once(category);
      const std::int64_t tokens = rules_.llm_tokens(s);
      if (tokens <= mix_.context_limit) return s;
      const std::int64_t media = tokens - s.text_tokens;
      if (mix_.overflow == Overflow::truncate && media < mix_.context_limit) {
        s.text_tokens -= tokens - mix_.context_limit;
        ++stats_.truncated;
        return s;
      }
      ++stats_.rejected;
    }
    common::Where w;
    w.file = file_;
    w.pointer = "/categories/" + std::to_string(category);
    throw common::InputError::message(
        w,
        "category '" + mix_.categories[static_cast<std::size_t>(category)].name +
            "': " + std::to_string(kMaxDrawsPerSample) + " draws in a row exceed context_limit " +
            std::to_string(mix_.context_limit) + " LLM tokens",
        "raise context_limit, or lower the category's image, frame or audio counts");
  }

  // HF Trainer's group_by_length: sort a megabatch of batches by sample length (longest
  // first) and deal the samples back out, so each batch holds samples of similar length.
  // With group_by "category" the sort stays within each category's batches. The batches
  // are then shuffled.
  void regroup_by_length(std::vector<Batch>& mega, const std::vector<int>& keys) {
    std::vector<int> seen;
    for (int key : keys)
      if (std::find(seen.begin(), seen.end(), key) == seen.end()) seen.push_back(key);
    for (int key : seen) {
      std::vector<std::size_t> members;
      std::vector<Sample> pool;
      for (std::size_t i = 0; i < mega.size(); ++i) {
        if (keys[i] != key) continue;
        members.push_back(i);
        for (auto& s : mega[i].samples) pool.push_back(std::move(s));
      }
      std::vector<std::int64_t> length(pool.size());
      for (std::size_t i = 0; i < pool.size(); ++i) length[i] = rules_.llm_tokens(pool[i]);
      std::vector<std::size_t> order(pool.size());
      std::iota(order.begin(), order.end(), std::size_t{0});
      std::stable_sort(order.begin(), order.end(),
                       [&](std::size_t a, std::size_t b) { return length[a] > length[b]; });
      std::size_t next = 0;
      for (std::size_t m : members)
        for (auto& s : mega[m].samples) s = std::move(pool[order[next++]]);
    }
    for (std::size_t i = mega.size(); i > 1; --i) {  // Fisher-Yates
      const auto j = static_cast<std::size_t>(rng_.uniform_int(0, static_cast<std::int64_t>(i) - 1));
      std::swap(mega[i - 1], mega[j]);
    }
  }

  const MixSpec& mix_;
  const TokenRules& rules_;
  Rng rng_;
  std::string file_;
  GenStats stats_;
  std::vector<std::optional<Sample>> pending_;  // token budgets: the sample carried over, per category
};

}  // namespace

GeneratedTrace generate_trace(const MixSpec& mix, const TokenRules& rules, const GenOptions& options,
                              const std::string& mix_file) {
  Generator g(mix, rules, options.seed, mix_file);
  return g.run(options.batches);
}

// ---- summary -------------------------------------------------------------------------

TraceSummary summarize(const std::vector<Batch>& batches, const TokenRules& rules) {
  TraceSummary s;
  s.work_unit = rules.work_unit();
  s.batches = static_cast<std::int64_t>(batches.size());
  if (batches.empty()) return s;
  s.min_batch_samples = s.min_batch_tokens = std::numeric_limits<std::int64_t>::max();
  s.min_batch_work = std::numeric_limits<double>::infinity();
  double total_work = 0.0;
  for (const Batch& b : batches) {
    std::int64_t tokens = 0;
    double work = 0.0;
    for (const Sample& sm : b.samples) {
      const std::int64_t llm = rules.llm_tokens(sm);
      tokens += llm;
      work += rules.work(sm);
      s.text_tokens += sm.text_tokens;
      s.image_tokens += sm.image_tokens();
      s.video_tokens += sm.video_tokens();
      for (const AudioItem& a : sm.audios) s.audio_tokens += rules.audio_tokens(a.seconds);
      s.images += static_cast<std::int64_t>(sm.images.size());
      s.videos += static_cast<std::int64_t>(sm.videos.size());
      s.audio_clips += static_cast<std::int64_t>(sm.audios.size());
      s.audio_seconds += sm.audio_seconds();
    }
    work /= rules.work_scale();
    const auto n = static_cast<std::int64_t>(b.samples.size());
    s.samples += n;
    s.llm_tokens += tokens;
    s.min_batch_samples = std::min(s.min_batch_samples, n);
    s.max_batch_samples = std::max(s.max_batch_samples, n);
    s.min_batch_tokens = std::min(s.min_batch_tokens, tokens);
    s.max_batch_tokens = std::max(s.max_batch_tokens, tokens);
    s.min_batch_work = std::min(s.min_batch_work, work);
    s.max_batch_work = std::max(s.max_batch_work, work);
    total_work += work;
  }
  s.mean_batch_work = total_work / static_cast<double>(s.batches);
  s.dynamicity = s.min_batch_work > 0.0 ? s.max_batch_work / s.min_batch_work : 0.0;
  return s;
}

}  // namespace pipeweaver::spec
