#include "search/partition.hpp"

#include <algorithm>
#include <limits>
#include <numeric>
#include <tuple>

#include "common/errors.hpp"

namespace pipeweaver::search {

using spec::ModuleKind;

double ModuleWeights::total() const {
  return std::accumulate(w.begin(), w.end(), 0.0);
}

namespace {

double pass_ns(const cost::PassCost& c) {
  return static_cast<double>(c.f_ns + c.i_ns + c.w_ns);
}

}  // namespace

std::vector<int> default_module_order(const spec::ModelSpec& model) {
  std::vector<int> order;
  for (std::size_t m = 0; m < model.modules.size(); ++m)
    if (model.modules[m].kind == ModuleKind::encoder) order.push_back(static_cast<int>(m));
  order.push_back(model.llm_index);
  return order;
}

std::vector<std::vector<int>> module_orders(const spec::ModelSpec& model) {
  std::vector<int> enc = default_module_order(model);
  enc.pop_back();
  std::vector<std::vector<int>> out;
  std::sort(enc.begin(), enc.end());
  do {
    std::vector<int> o = enc;
    o.push_back(model.llm_index);
    out.push_back(std::move(o));
  } while (out.size() < 24 && std::next_permutation(enc.begin(), enc.end()));
  return out;
}

std::vector<ModuleWeights> module_weights(const spec::ModelSpec& model, const cost::Device& device,
                                          const cost::CostOptions& options, std::span<const spec::Batch> batches,
                                          const std::vector<int>& order) {
  std::vector<ModuleWeights> out;
  for (const int mi : order) {
    ModuleWeights mw;
    mw.module = mi;
    mw.w.assign(static_cast<std::size_t>(model.modules[static_cast<std::size_t>(mi)].layers), 0.0);
    out.push_back(std::move(mw));
  }
  std::vector<std::int32_t> all;
  for (const spec::Batch& b : batches) {
    all.resize(b.samples.size());
    std::iota(all.begin(), all.end(), 0);
    const std::vector<cost::ModuleLoad> loads = cost::microbatch_loads(model, b, all);
    for (ModuleWeights& mw : out) {
      const spec::Module& m = model.modules[static_cast<std::size_t>(mw.module)];
      const cost::ModuleLoad& load = loads[static_cast<std::size_t>(mw.module)];
      const double layer = pass_ns(cost::layer_cost(device, m, load, model.dtype_bytes, options));
      for (double& x : mw.w) x += layer;
      if (mw.w.empty()) continue;
      mw.w.front() += pass_ns(cost::extras_cost(device, m, load, model.dtype_bytes, true, false));
      mw.w.back() += pass_ns(cost::extras_cost(device, m, load, model.dtype_bytes, false, true));
      if (m.kind == ModuleKind::encoder)
        for (const int p : cost::projectors_of(model, mw.module))
          mw.w.back() += pass_ns(cost::layer_cost(device, model.modules[static_cast<std::size_t>(p)],
                                                  loads[static_cast<std::size_t>(p)], model.dtype_bytes, options));
    }
  }
  // A module without work in these batches still needs chunks: weigh it by a tiny amount so
  // splits stay even rather than arbitrary.
  for (ModuleWeights& mw : out)
    for (double& x : mw.w) x = std::max(x, 1.0);
  return out;
}

std::vector<std::int32_t> chunk_counts(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                       std::int32_t n_chunks) {
  std::int64_t layers = 0;
  for (const ModuleWeights& mw : weights) layers += static_cast<std::int64_t>(mw.w.size());
  if (n_chunks < static_cast<std::int32_t>(weights.size()) || n_chunks > layers)
    throw common::UsageError("cannot cut " + model.name + " into " + std::to_string(n_chunks) + " chunks",
                             "a chunk is a layer range of one module: between " + std::to_string(weights.size()) +
                                 " and " + std::to_string(layers) + " chunks");
  std::vector<std::int32_t> count(weights.size(), 1);
  std::vector<double> total(weights.size());
  for (std::size_t j = 0; j < weights.size(); ++j) total[j] = weights[j].total();
  for (std::int32_t extra = n_chunks - static_cast<std::int32_t>(weights.size()); extra > 0; --extra) {
    std::size_t best = weights.size();
    double best_load = -1;
    for (std::size_t j = 0; j < weights.size(); ++j) {
      if (count[j] >= static_cast<std::int32_t>(weights[j].w.size())) continue;
      const double load = total[j] / count[j];
      if (load > best_load) {
        best_load = load;
        best = j;
      }
    }
    PWPI_CHECK(best < weights.size());
    ++count[best];
  }
  return count;
}

std::vector<std::int32_t> split_min_max(std::span<const double> w, std::int32_t k) {
  const auto n = static_cast<std::int32_t>(w.size());
  PWPI_CHECK(k >= 1 && k <= n);
  std::vector<double> prefix(static_cast<std::size_t>(n) + 1, 0.0);
  for (std::int32_t i = 0; i < n; ++i) prefix[static_cast<std::size_t>(i) + 1] = prefix[static_cast<std::size_t>(i)] + w[static_cast<std::size_t>(i)];
  const auto N = static_cast<std::size_t>(n) + 1;
  constexpr double inf = std::numeric_limits<double>::infinity();
  // best[j][i]: heaviest part of the best split of the first i layers into j parts.
  std::vector<double> best(static_cast<std::size_t>(k + 1) * N, inf);
  std::vector<std::int32_t> cut(static_cast<std::size_t>(k + 1) * N, 0);
  best[0] = 0.0;
  for (std::int32_t j = 1; j <= k; ++j)
    for (std::int32_t i = j; i <= n - (k - j); ++i) {
      double b = inf;
      std::int32_t arg = j - 1;
      for (std::int32_t l = j - 1; l < i; ++l) {
        const double prev = best[static_cast<std::size_t>(j - 1) * N + static_cast<std::size_t>(l)];
        const double part = prefix[static_cast<std::size_t>(i)] - prefix[static_cast<std::size_t>(l)];
        const double v = std::max(prev, part);
        if (v < b) {  // strict: the earliest cut among equals, so results are reproducible
          b = v;
          arg = l;
        }
      }
      best[static_cast<std::size_t>(j) * N + static_cast<std::size_t>(i)] = b;
      cut[static_cast<std::size_t>(j) * N + static_cast<std::size_t>(i)] = arg;
    }
  std::vector<std::int32_t> bounds(static_cast<std::size_t>(k) + 1);
  bounds[static_cast<std::size_t>(k)] = n;
  for (std::int32_t j = k, i = n; j >= 1; --j) {
    i = cut[static_cast<std::size_t>(j) * N + static_cast<std::size_t>(i)];
    bounds[static_cast<std::size_t>(j) - 1] = i;
  }
  return bounds;
}

std::vector<schedule::Chunk> balanced_partition(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                                std::span<const std::int32_t> counts) {
  PWPI_CHECK(weights.size() == counts.size());
  std::vector<schedule::Chunk> out;
  for (std::size_t j = 0; j < weights.size(); ++j) {
    const std::vector<std::int32_t> b = split_min_max(weights[j].w, counts[j]);
    const std::string& name = model.modules[static_cast<std::size_t>(weights[j].module)].name;
    for (std::size_t c = 0; c + 1 < b.size(); ++c) out.push_back({name, b[c], b[c + 1], 0});
  }
  return out;
}

void place(std::vector<schedule::Chunk>& chunks, std::int32_t n_ranks, Placement placement) {
  for (std::size_t s = 0; s < chunks.size(); ++s) {
    const auto lap = static_cast<std::int32_t>(s / static_cast<std::size_t>(n_ranks));
    const auto pos = static_cast<std::int32_t>(s % static_cast<std::size_t>(n_ranks));
    chunks[s].rank = (placement == Placement::vshape && lap % 2 == 1) ? n_ranks - 1 - pos : pos;
  }
}

void move_layer(std::vector<schedule::Chunk>& chunks, std::size_t a, std::size_t b) {
  PWPI_CHECK(a < chunks.size() && b < chunks.size() && chunks[a].layer_end - chunks[a].layer_begin >= 2);
  if (a < b) {
    for (std::size_t c = a; c < b; ++c) {
      --chunks[c].layer_end;
      --chunks[c + 1].layer_begin;
    }
  } else {
    for (std::size_t c = b; c < a; ++c) {
      ++chunks[c].layer_end;
      ++chunks[c + 1].layer_begin;
    }
  }
}

void balance_ranks(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                   std::vector<schedule::Chunk>& chunks, std::int32_t n_ranks) {
  const std::size_t n = chunks.size(), P = static_cast<std::size_t>(n_ranks);
  // Prefix sums of every module's layer weights: a chunk's weight is a difference.
  std::vector<std::vector<double>> prefix(weights.size());
  for (std::size_t j = 0; j < weights.size(); ++j) {
    prefix[j].assign(weights[j].w.size() + 1, 0.0);
    for (std::size_t l = 0; l < weights[j].w.size(); ++l) prefix[j][l + 1] = prefix[j][l] + weights[j].w[l];
  }
  std::vector<std::size_t> module_of(n, weights.size()), rank(n);
  std::vector<std::int32_t> lo(n), hi(n);  // layer ranges, worked on without the strings
  std::vector<std::int32_t> held(P, 0);    // non-empty chunks per rank
  for (std::size_t c = 0; c < n; ++c) {
    const int mi = model.find(chunks[c].module);
    for (std::size_t j = 0; j < weights.size(); ++j)
      if (weights[j].module == mi) module_of[c] = j;
    PWPI_CHECK_MSG(module_of[c] < weights.size(), "a chunk's module has no weights");
    rank[c] = static_cast<std::size_t>(chunks[c].rank);
    PWPI_CHECK(rank[c] < P);
    lo[c] = chunks[c].layer_begin;
    hi[c] = chunks[c].layer_end;
    ++held[rank[c]];
  }
  // Runs of consecutive chunks of one module: layers move only inside a run.
  std::vector<std::size_t> run(n, 0);
  for (std::size_t c = 1; c < n; ++c) run[c] = run[c - 1] + (module_of[c] != module_of[c - 1] ? 1 : 0);
  const auto weight = [&](std::size_t c, std::int32_t begin, std::int32_t end) {
    const std::vector<double>& pre = prefix[module_of[c]];
    return pre[static_cast<std::size_t>(end)] - pre[static_cast<std::size_t>(begin)];
  };
  std::vector<double> load(P, 0.0);
  for (std::size_t c = 0; c < n; ++c) load[rank[c]] += weight(c, lo[c], hi[c]);

  // Moving a layer from chunk a to chunk b shifts every boundary between them by one: a
  // shrinks, b grows, the chunks between keep their sizes but not always their weights
  // (module ends carry extras), so all of [a, b] are re-weighed. A chunk may give away its
  // last layer (it is dropped at the end) unless it is its rank's only chunk.
  std::vector<double> delta(P, 0.0);
  std::vector<std::size_t> touched;
  const auto shifted = [&](std::size_t c, std::size_t a, std::size_t b) -> std::pair<std::int32_t, std::int32_t> {
    if (a < b) return {c == a ? lo[c] : lo[c] - 1, c == b ? hi[c] : hi[c] - 1};
    return {c == a ? lo[c] + 1 : lo[c] + 1 - (c == b ? 1 : 0), c == b ? hi[c] + 1 : (c == a ? hi[c] : hi[c] + 1)};
  };
  for (std::size_t iter = 0; iter < 4 * n + 64; ++iter) {
    const auto busiest = static_cast<std::size_t>(std::max_element(load.begin(), load.end()) - load.begin());
    double best_peak = load[busiest];
    std::size_t best_a = n, best_b = n;
    for (std::size_t a = 0; a < n; ++a) {
      if (rank[a] != busiest || hi[a] - lo[a] < 1 || (hi[a] - lo[a] == 1 && held[busiest] < 2)) continue;
      for (std::size_t b = 0; b < n; ++b) {
        if (b == a || run[b] != run[a] || rank[b] == busiest) continue;
        for (const std::size_t r : touched) delta[r] = 0.0;
        touched.clear();
        for (std::size_t c = std::min(a, b); c <= std::max(a, b); ++c) {
          const auto [nb, ne] = shifted(c, a, b);
          const double d = weight(c, nb, ne) - weight(c, lo[c], hi[c]);
          if (d == 0.0) continue;
          if (delta[rank[c]] == 0.0) touched.push_back(rank[c]);
          delta[rank[c]] += d;
        }
        if (!(delta[busiest] < 0.0)) continue;  // the busiest rank must drop
        double peak = 0;
        for (const std::size_t r : touched) peak = std::max(peak, load[r] + delta[r]);
        if (peak < best_peak) {  // and no rank the move touches may reach its old load
          best_peak = peak;
          best_a = a;
          best_b = b;
        }
      }
    }
    if (best_a == n) break;
    const std::size_t first = std::min(best_a, best_b), last = std::max(best_a, best_b);
    std::vector<std::pair<std::int32_t, std::int32_t>> next;
    for (std::size_t c = first; c <= last; ++c) next.push_back(shifted(c, best_a, best_b));
    for (std::size_t c = first; c <= last; ++c) {
      load[rank[c]] -= weight(c, lo[c], hi[c]);
      held[rank[c]] -= hi[c] > lo[c] ? 1 : 0;
      std::tie(lo[c], hi[c]) = next[c - first];
      load[rank[c]] += weight(c, lo[c], hi[c]);
      held[rank[c]] += hi[c] > lo[c] ? 1 : 0;
    }
  }
  std::vector<schedule::Chunk> out;
  for (std::size_t c = 0; c < n; ++c)
    if (hi[c] > lo[c]) {
      out.push_back(chunks[c]);
      out.back().layer_begin = lo[c];
      out.back().layer_end = hi[c];
    }
  chunks = std::move(out);
}

std::vector<double> chunk_weights(const spec::ModelSpec& model, std::span<const ModuleWeights> weights,
                                  std::span<const schedule::Chunk> chunks) {
  std::vector<double> out;
  out.reserve(chunks.size());
  for (const schedule::Chunk& c : chunks) {
    const int mi = model.find(c.module);
    double w = 0;
    for (const ModuleWeights& mw : weights)
      if (mw.module == mi)
        for (std::int32_t l = c.layer_begin; l < c.layer_end; ++l) w += mw.w[static_cast<std::size_t>(l)];
    out.push_back(w);
  }
  return out;
}

}  // namespace pipeweaver::search
