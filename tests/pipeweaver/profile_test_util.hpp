// A device profile's curves checked against its own raw measurements, recomputed here: the
// efficiency of a call is its FLOP/s over the peak, and a curve point is the mean of the
// calls in one half decade of FLOPs per call (mean log10 FLOPs, mean efficiency).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "common/json_io.hpp"
#include "cost/device_profile.hpp"

namespace pwtest {

/// The curve expected from `rows` (objects with "flops" and "flops_per_s") against `peak`.
inline std::vector<std::pair<double, double>> curve_by_hand(const common::Json& rows, double peak) {
  std::map<int, std::pair<double, double>> sum;  // half decade -> (sum log10 flops, sum efficiency)
  std::map<int, int> n;
  for (const auto& r : rows) {
    const double f = r.at("flops").get<double>(), rate = r.at("flops_per_s").get<double>();
    const int bin = static_cast<int>(std::floor(2.0 * std::log10(f)));
    sum[bin].first += std::log10(f);
    sum[bin].second += rate / peak;
    ++n[bin];
  }
  std::vector<std::pair<double, double>> out;
  for (const auto& [bin, s] : sum) out.emplace_back(std::pow(10.0, s.first / n[bin]), s.second / n[bin]);
  return out;
}

/// Checks that `curve` is the curve of `rows` against `peak`, point by point.
inline void check_curve_reproduces(const pipeweaver::cost::EfficiencyCurve& curve, const common::Json& rows,
                                   double peak) {
  const auto expected = curve_by_hand(rows, peak);
  REQUIRE(curve.points.size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    INFO("point " << i << ": got (" << curve.points[i].first << ", " << curve.points[i].second
                  << "), expected (" << expected[i].first << ", " << expected[i].second << ")");
    CHECK(curve.points[i].first == Approx(expected[i].first).epsilon(1e-12));
    CHECK(curve.points[i].second == Approx(expected[i].second).epsilon(1e-12));
  }
}

/// The largest "flops_per_s" of `rows`.
inline double best_rate(const common::Json& rows) {
  double best = 0;
  for (const auto& r : rows) best = std::max(best, r.at("flops_per_s").get<double>());
  return best;
}

}  // namespace pwtest
