#include "prep/profile.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/errors.hpp"
#include "model/forward.hpp"

namespace powerinfer2::prep {

ActivationRecord record_activations(const model::Model& dense, common::ThreadPool& pool,
                                    std::span<const model::TokenId> tokens, std::size_t window,
                                    std::size_t keep_inputs) {
  PWPI_CHECK(!dense.pi2 && window >= 1);
  const model::ModelConfig& c = dense.config;
  window = std::min<std::size_t>(window, c.n_ctx);
  ActivationRecord rec;
  rec.fired.assign(c.n_layer, std::vector<std::uint64_t>(c.ffn_dim, 0));
  const std::size_t keep = std::min(keep_inputs, tokens.size());
  rec.inputs.assign(c.n_layer, std::vector<float>(keep * c.dim));
  // Token t is kept when floor((t + 1) * keep / n) > floor(t * keep / n): evenly spread.
  std::vector<std::size_t> slot(tokens.size(), SIZE_MAX);
  for (std::size_t t = 0, k = 0; t < tokens.size(); ++t)
    if ((t + 1) * keep / tokens.size() > t * keep / tokens.size()) slot[t] = k++;
  model::Forward fwd(dense, pool, window, std::min<std::size_t>(window, 256));
  std::size_t base = 0;  // index in `tokens` of the batch being run
  std::size_t batch_start = 0;
  fwd.set_ffn_observer([&](std::size_t layer, std::size_t n, const float* xb, const float* gate, const float* up) {
    std::vector<std::uint64_t>& f = rec.fired[layer];
    for (std::size_t t = 0; t < n; ++t) {
      const float* g = gate + t * c.ffn_dim;
      const float* u = up + t * c.ffn_dim;
      for (std::size_t i = 0; i < c.ffn_dim; ++i) f[i] += ops::neuron_fires(c.activation, g[i], u[i]) ? 1 : 0;
      const std::size_t s = slot[base + batch_start + t];
      if (s != SIZE_MAX) std::copy_n(xb + t * c.dim, c.dim, rec.inputs[layer].begin() + static_cast<std::ptrdiff_t>(s * c.dim));
    }
  });
  for (base = 0; base < tokens.size(); base += window) {
    const std::size_t n = std::min(window, tokens.size() - base);
    // prefill splits into batches of max_batch; follow them for the input slots.
    for (batch_start = 0; batch_start < n; batch_start += fwd.max_batch()) {
      const std::size_t m = std::min(fwd.max_batch(), n - batch_start);
      fwd.prefill(tokens.subspan(base + batch_start, m), batch_start);
    }
  }
  rec.tokens = tokens.size();
  rec.n_kept = keep;
  return rec;
}

std::vector<std::int32_t> hotness_order(std::span<const std::uint64_t> fired) {
  std::vector<std::int32_t> order(fired.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
    return fired[static_cast<std::size_t>(a)] > fired[static_cast<std::size_t>(b)];
  });
  return order;
}

std::vector<PredictorTensors> train_predictors(const model::Model& dense, common::ThreadPool& pool,
                                               const ActivationRecord& rec,
                                               const std::vector<std::vector<std::int32_t>>& perm,
                                               const PredictorFitOptions& o, std::vector<LayerFitReport>& reports) {
  const model::ModelConfig& c = dense.config;
  const std::size_t n = rec.n_kept, dim = c.dim, ffn = c.ffn_dim;
  const bool drelu = c.activation == model::FfnActivation::drelu;
  PWPI_CHECK(perm.size() == c.n_layer);
  // dReLU needs gate AND up: each predictor gets half the miss budget.
  PredictorFitOptions each = o;
  // At least 16 directions: small models need their full input subspace (rank k + 1 with the
  // constant channel), which dim / 16 can miss.
  if (each.max_rank == 0) each.max_rank = std::max<std::size_t>(16, dim / 16);
  if (drelu) each.target_recall = 1.0 - (1.0 - o.target_recall) / 2.0;
  const std::size_t chunk = 256;
  ops::Workspace ws(chunk, dim, pool.size());
  std::vector<float> g(n * ffn), u(n * ffn), tmp(chunk * ffn);
  std::vector<PredictorTensors> out(c.n_layer);
  reports.assign(c.n_layer, {});
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    const model::LayerWeights& L = dense.weights.layers[l];
    const std::vector<float>& xs = rec.inputs[l];
    // Pre-activations of the kept inputs, columns in the converted file's order.
    for (auto [w, dst] : {std::pair{&L.gate, &g}, std::pair{&L.up, &u}}) {
      for (std::size_t t0 = 0; t0 < n; t0 += chunk) {
        const std::size_t m = std::min(chunk, n - t0);
        ops::matmul(*w, {xs.data() + t0 * dim, m * dim}, m, {tmp.data(), m * ffn}, pool, ws);
        for (std::size_t t = 0; t < m; ++t)
          for (std::size_t p = 0; p < ffn; ++p)
            (*dst)[(t0 + t) * ffn + p] = tmp[t * ffn + static_cast<std::size_t>(perm[l][p])];
      }
    }
    // Rank: the smallest of dim/64, dim/32, dim/16 (at least 16; --max-rank caps them) whose
    // held-out precision at the recall target is within 0.02 of the best: quantization noise
    // spreads a little energy over every direction, so an energy share alone picks too many.
    LinearPredictor gp;
    PredictorFitOptions chosen = each;
    {
      std::vector<std::size_t> ranks;
      for (std::size_t r : {dim / 64, dim / 32, dim / 16}) ranks.push_back(std::min(each.max_rank, std::max<std::size_t>(16, r)));
      ranks.erase(std::unique(ranks.begin(), ranks.end()), ranks.end());
      std::vector<std::pair<LinearPredictor, PredictorFitReport>> fits;
      double best = 0.0;
      for (std::size_t r : ranks) {
        PredictorFitOptions fo = each;
        fo.max_rank = r;
        fits.push_back(fit_linear_predictor(xs, g, n, dim, ffn, fo));
        best = std::max(best, fits.back().second.precision);
      }
      for (std::size_t k = 0; k < fits.size(); ++k)
        if (fits[k].second.precision >= best - 0.02) {
          gp = std::move(fits[k].first);
          chosen.max_rank = ranks[k];
          break;
        }
    }
    LinearPredictor up_p;
    if (drelu) {  // the same options on the same inputs: the same W1, stored once
      up_p = fit_linear_predictor(xs, u, n, dim, ffn, chosen).first;
      PWPI_CHECK(up_p.w1 == gp.w1);
    }
    // Quality on every kept sample is optimistic for the training part; the fit reports
    // held-out figures for a single predictor: use them for ReGLU, the joint for dReLU
    // measured on the held-out split.
    std::vector<float> hx, hg, hu;
    std::size_t nh = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (!is_holdout(i, o.holdout)) continue;
      hx.insert(hx.end(), xs.begin() + static_cast<std::ptrdiff_t>(i * dim), xs.begin() + static_cast<std::ptrdiff_t>((i + 1) * dim));
      hg.insert(hg.end(), g.begin() + static_cast<std::ptrdiff_t>(i * ffn), g.begin() + static_cast<std::ptrdiff_t>((i + 1) * ffn));
      hu.insert(hu.end(), u.begin() + static_cast<std::ptrdiff_t>(i * ffn), u.begin() + static_cast<std::ptrdiff_t>((i + 1) * ffn));
      ++nh;
    }
    PWPI_CHECK(!drelu || up_p.rank == gp.rank);  // W1 depends on the inputs only: shared
    const SetQuality q = measure_and(gp, drelu ? &up_p : nullptr, hx, hg, hu, nh);
    reports[l] = {gp.rank, q.recall, q.precision, q.predicted_fraction, q.true_fraction};
    // Store: a rank-0 fit (inputs without energy) becomes rank 1 with a zero direction.
    PredictorTensors& P = out[l];
    const std::size_t rank = std::max<std::size_t>(1, std::max(gp.rank, drelu ? up_p.rank : 0));
    P.rank = rank;
    auto widen = [&](const LinearPredictor& lp, std::vector<float>& w1, std::vector<float>& w2) {
      // Both predictors share W1 when they have the same rank and basis; otherwise W1 is the
      // gate's and the up predictor is refitted below. Here: copy into rank-wide arrays.
      w2.assign(ffn * rank, 0.0f);
      for (std::size_t i = 0; i < ffn; ++i)
        for (std::size_t r = 0; r < lp.rank; ++r) w2[i * rank + r] = lp.w2[i * lp.rank + r];
      if (w1.empty()) {
        w1.assign(rank * dim, 0.0f);
        std::copy(lp.w1.begin(), lp.w1.end(), w1.begin());
      }
    };
    widen(gp, P.w1, P.gate_w2);
    P.gate_bias = gp.bias;
    if (drelu) {
      widen(up_p, P.w1, P.up_w2);
      P.up_bias = up_p.bias;
    }
  }
  return out;
}

}  // namespace powerinfer2::prep
