// The recall a predictor calibrated to a target may honestly show on fresh samples.
//
// The fit widens its margin until the recall on its own held-out split reaches the target,
// so that figure proves nothing. On fresh samples of the same process the recall is the
// target up to sampling noise: of the held-out firings the margin was calibrated on (m_h)
// and of the fresh firings it is measured on (m_f). Misses cluster by sample (one input
// moves all of a layer's neurons), so the binomial variance is scaled by the design effect
// measured on the fresh samples (cluster-robust variance / binomial variance, at least 1):
//   bound = target - 4 sigma,  sigma^2 = deff t (1 - t) (1 / m_h + 1 / m_f).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace recall_bound {

/// Firings and the predicted share of them, per fresh sample.
struct Samples {
  std::vector<double> fired, found;
  void add(double f, double hit) {
    fired.push_back(f);
    found.push_back(hit);
  }
  double total_fired() const {
    double s = 0;
    for (double f : fired) s += f;
    return s;
  }
  double recall() const {
    double hit = 0;
    for (double h : found) hit += h;
    return total_fired() > 0 ? hit / total_fired() : 1.0;
  }
  /// Cluster-robust variance of the miss rate over binomial variance, at least 1.
  double design_effect() const {
    const double m = total_fired(), miss = 1.0 - recall(), n = static_cast<double>(fired.size());
    if (m <= 0 || n < 2 || miss <= 0 || miss >= 1) return 1.0;
    double ss = 0;
    for (std::size_t s = 0; s < fired.size(); ++s) {
      const double r = (fired[s] - found[s]) - miss * fired[s];
      ss += r * r;
    }
    const double cluster_var = n / (n - 1) * ss / (m * m);
    return std::max(1.0, cluster_var / (miss * (1.0 - miss) / m));
  }
};

/// The least fresh recall consistent with `target` (see above).
inline double bound(double target, double heldout_fired, const Samples& fresh) {
  const double var = fresh.design_effect() * target * (1.0 - target) * (1.0 / heldout_fired + 1.0 / fresh.total_fired());
  return target - 4.0 * std::sqrt(var);
}

}  // namespace recall_bound
