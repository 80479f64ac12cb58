#include "search/packing.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <string>

#include "common/errors.hpp"

namespace pipeweaver::search {

namespace {

// Exactly `m` non-empty microbatches need 1 <= m <= n_samples.
void check_count(std::size_t n_samples, std::int32_t m) {
  if (m < 1 || static_cast<std::size_t>(m) > n_samples)
    throw common::UsageError("cannot pack " + std::to_string(n_samples) + " samples into " + std::to_string(m) +
                                 " non-empty microbatches",
                             "ask for at most " + std::to_string(n_samples) + " microbatches");
}

// A sample's forward FLOPs per module, into `out` (one entry per module, zeroed first);
// they sum to ModelSpec::forward_flops(sample).
void module_flops(const spec::ModelSpec& model, const spec::Sample& sample, std::span<double> out) {
  std::fill(out.begin(), out.end(), 0.0);
  const spec::SampleShape shape = model.shape(sample);
  out[static_cast<std::size_t>(model.llm_index)] = model.llm().forward_flops(shape.llm_tokens);
  for (const spec::EncoderPass& p : shape.encoder_passes)
    out[static_cast<std::size_t>(p.module)] +=
        static_cast<double>(p.count) * model.modules[static_cast<std::size_t>(p.module)].forward_flops(p.seq_len);
  for (const auto& [projector, tokens] : shape.projector_tokens)
    out[static_cast<std::size_t>(projector)] += model.modules[static_cast<std::size_t>(projector)].forward_flops(tokens);
}

}  // namespace

std::vector<std::vector<std::int32_t>> pack_token_budget(const spec::ModelSpec& model, const spec::Batch& batch,
                                                         std::int64_t token_budget) {
  std::vector<std::vector<std::int32_t>> out;
  std::int64_t used = 0;
  for (std::size_t i = 0; i < batch.samples.size(); ++i) {
    const std::int64_t t = model.llm_tokens(batch.samples[i]);
    if (out.empty() || (used + t > token_budget && !out.back().empty())) {
      out.emplace_back();
      used = 0;
    }
    out.back().push_back(static_cast<std::int32_t>(i));
    used += t;
  }
  return out;
}

std::vector<std::vector<std::int32_t>> pack_contiguous(const spec::ModelSpec& model, const spec::Batch& batch,
                                                       std::int32_t n) {
  const std::size_t n_samples = batch.samples.size();
  check_count(n_samples, n);
  std::vector<double> tokens(n_samples);
  double total = 0;
  for (std::size_t i = 0; i < n_samples; ++i) total += tokens[i] = static_cast<double>(model.llm_tokens(batch.samples[i]));
  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(n));
  std::size_t i = 0;
  double cum = 0;
  for (std::int32_t mb = 0; mb < n; ++mb) {
    const double target = total * static_cast<double>(mb + 1) / static_cast<double>(n);
    const std::size_t must_leave = static_cast<std::size_t>(n - mb - 1);
    auto& group = out[static_cast<std::size_t>(mb)];
    while (i + must_leave < n_samples && (group.empty() || mb + 1 == n || cum + tokens[i] / 2 <= target)) {
      group.push_back(static_cast<std::int32_t>(i));
      cum += tokens[i++];
    }
  }
  return out;
}

std::vector<std::vector<std::int32_t>> pack_balanced(const spec::ModelSpec& model, const spec::Batch& batch,
                                                     std::int32_t m, bool total_only) {
  const std::size_t n = batch.samples.size();
  check_count(n, m);
  const std::size_t n_mod = model.modules.size();
  std::vector<double> cost(n * n_mod, 0.0), total(n, 0.0), share(n_mod, 0.0);
  for (std::size_t i = 0; i < n; ++i) {
    module_flops(model, batch.samples[i], std::span(cost).subspan(i * n_mod, n_mod));
    for (std::size_t k = 0; k < n_mod; ++k) {
      total[i] += cost[i * n_mod + k];
      share[k] += cost[i * n_mod + k];
    }
  }
  for (double& s : share) s = s > 0 ? s / m : 1.0;
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return total[a] > total[b]; });
  std::vector<double> load(static_cast<std::size_t>(m) * n_mod, 0.0), load_total(static_cast<std::size_t>(m), 0.0);
  std::vector<std::vector<std::int32_t>> out(static_cast<std::size_t>(m));
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t i = idx[r];
    std::size_t best = 0;
    double best_peak = std::numeric_limits<double>::infinity(), best_total = best_peak;
    const bool fill_empty = r < static_cast<std::size_t>(m);  // the m heaviest samples open the m microbatches
    for (std::size_t b = 0; b < static_cast<std::size_t>(m); ++b) {
      if (fill_empty && !out[b].empty()) continue;
      double peak = 0;
      if (total_only) peak = load_total[b] + total[i];
      else
        for (std::size_t k = 0; k < n_mod; ++k) peak = std::max(peak, (load[b * n_mod + k] + cost[i * n_mod + k]) / share[k]);
      if (peak < best_peak || (peak == best_peak && load_total[b] < best_total)) {
        best_peak = peak;
        best_total = load_total[b];
        best = b;
      }
    }
    out[best].push_back(static_cast<std::int32_t>(i));
    for (std::size_t k = 0; k < n_mod; ++k) load[best * n_mod + k] += cost[i * n_mod + k];
    load_total[best] += total[i];
  }
  for (auto& mb : out) std::sort(mb.begin(), mb.end());
  return out;
}

std::vector<std::vector<std::int32_t>> order_by_work(const spec::ModelSpec& model, const spec::Batch& batch,
                                                     std::vector<std::vector<std::int32_t>> packing,
                                                     bool heaviest_first) {
  std::vector<double> per(model.modules.size());
  std::vector<std::pair<double, std::size_t>> work;
  for (std::size_t b = 0; b < packing.size(); ++b) {
    double w = 0;
    for (const std::int32_t i : packing[b]) {
      module_flops(model, batch.samples[static_cast<std::size_t>(i)], per);
      for (const double x : per) w += x;
    }
    work.emplace_back(heaviest_first ? -w : w, b);
  }
  std::stable_sort(work.begin(), work.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::vector<std::int32_t>> out;
  for (const auto& [w, b] : work) out.push_back(std::move(packing[b]));
  return out;
}

void make_count_multiple(std::vector<std::vector<std::int32_t>>& mbs, const spec::ModelSpec& model,
                         const spec::Batch& batch, std::int32_t multiple) {
  PWPI_CHECK(multiple >= 1);
  const auto p = static_cast<std::size_t>(multiple);
  const auto tokens = [&](const std::vector<std::int32_t>& mb) {
    std::int64_t t = 0;
    for (const std::int32_t i : mb) t += model.llm_tokens(batch.samples[static_cast<std::size_t>(i)]);
    return t;
  };
  while (mbs.size() % p != 0) {
    std::size_t best = mbs.size();
    std::int64_t best_t = -1;
    for (std::size_t j = 0; j < mbs.size(); ++j)
      if (mbs[j].size() > 1 && tokens(mbs[j]) > best_t) {
        best_t = tokens(mbs[j]);
        best = j;
      }
    if (best < mbs.size()) {  // split it in two halves of about equal tokens, keeping sample order
      std::vector<std::int32_t>& mb = mbs[best];
      std::int64_t acc = 0;
      std::size_t cut = 1;
      for (std::size_t k = 0; k + 1 < mb.size(); ++k) {
        acc += model.llm_tokens(batch.samples[static_cast<std::size_t>(mb[k])]);
        cut = k + 1;
        if (2 * acc >= best_t) break;
      }
      std::vector<std::int32_t> tail(mb.begin() + static_cast<std::ptrdiff_t>(cut), mb.end());
      mb.resize(cut);
      mbs.insert(mbs.begin() + static_cast<std::ptrdiff_t>(best) + 1, std::move(tail));
      continue;
    }
    if (mbs.size() < p) break;  // too few samples: the caller reports it
    std::size_t j = 0;          // merge the lightest neighbouring pair
    std::int64_t lightest = -1;
    for (std::size_t k = 0; k + 1 < mbs.size(); ++k) {
      const std::int64_t t = tokens(mbs[k]) + tokens(mbs[k + 1]);
      if (lightest < 0 || t < lightest) {
        lightest = t;
        j = k;
      }
    }
    mbs[j].insert(mbs[j].end(), mbs[j + 1].begin(), mbs[j + 1].end());
    mbs.erase(mbs.begin() + static_cast<std::ptrdiff_t>(j) + 1);
  }
}

void assign_samples(schedule::Schedule& s, const spec::ModelSpec& model, const spec::Batch& batch,
                    const common::Where& where) {
  if (s.microbatch_samples.empty())
    s.microbatch_samples = pack_contiguous(model, batch, s.n_microbatches);
  else
    schedule::check_microbatch_samples(s, batch.samples.size(), batch.index, where);
}

}  // namespace pipeweaver::search
