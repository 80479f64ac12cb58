#include "cost/device_profile.hpp"

#include <algorithm>
#include <cmath>

namespace pipeweaver::cost {

double EfficiencyCurve::at(double flops_per_call) const {
  if (points.empty()) return 0.0;
  if (flops_per_call <= points.front().first) return points.front().second;
  if (flops_per_call >= points.back().first) return points.back().second;
  const double x = std::log10(flops_per_call);
  auto hi = std::upper_bound(points.begin(), points.end(), flops_per_call,
                             [](double v, const std::pair<double, double>& p) { return v < p.first; });
  auto lo = hi - 1;
  const double x0 = std::log10(lo->first), x1 = std::log10(hi->first);
  const double t = x1 > x0 ? (x - x0) / (x1 - x0) : 0.0;
  return lo->second + t * (hi->second - lo->second);
}

EfficiencyCurve make_curve(std::vector<std::pair<double, double>> samples, int bins_per_decade) {
  std::sort(samples.begin(), samples.end());
  EfficiencyCurve curve;
  std::size_t i = 0;
  while (i < samples.size()) {
    const double bin = std::floor(std::log10(samples[i].first) * bins_per_decade);
    double sum_logx = 0, sum_eff = 0;
    std::size_t n = 0;
    for (; i < samples.size() && std::floor(std::log10(samples[i].first) * bins_per_decade) == bin; ++i, ++n) {
      sum_logx += std::log10(samples[i].first);
      sum_eff += samples[i].second;
    }
    curve.points.emplace_back(std::pow(10.0, sum_logx / static_cast<double>(n)), sum_eff / static_cast<double>(n));
  }
  return curve;
}

namespace {

common::Json curve_json(const EfficiencyCurve& c) {
  common::Json pts = common::Json::array();
  for (const auto& [x, e] : c.points) pts.push_back({x, e});
  return {{"x", "flops_per_call"}, {"points", pts}};
}

EfficiencyCurve parse_curve(const common::JsonView& v) {
  v.allow_only({"x", "points"});
  if (auto x = v.find("x")) x->as_enum({"flops_per_call"});
  EfficiencyCurve c;
  const common::JsonView pts = v.at("points");
  if (!pts.is_array() || pts.size() == 0) pts.fail("a non-empty array of [flops_per_call, efficiency] pairs");
  double last = 0.0;
  for (const auto& p : pts.items()) {
    if (!p.is_array() || p.size() != 2) p.fail("a pair [flops_per_call, efficiency]");
    const double x = p.at(0).as_positive_number();
    const double e = p.at(1).as_number(1e-6, 1.0);
    if (x <= last) p.at(0).fail("FLOPs per call above the previous point's (" + std::to_string(last) + ")");
    last = x;
    c.points.emplace_back(x, e);
  }
  return c;
}

}  // namespace

common::Json to_json(const DeviceProfile& p) {
  return {{"version", kDeviceProfileVersion},
          {"device", {{"type", p.device_type}, {"name", p.device_name}, {"backend", p.backend}, {"threads", p.threads}}},
          {"peak_flops", p.peak_flops},
          {"peak_source", p.peak_source},
          {"gemm", curve_json(p.gemm)},
          {"attention", curve_json(p.attention)},
          {"measurements", p.measurements}};
}

DeviceProfile parse_device_profile(const common::Json& doc, const std::string& file) {
  const common::JsonView root = common::json_root(doc, file);
  if (!root.is_object()) root.fail("an object (a pipeweaver device profile)");
  common::require_version(root, "pipeweaver device profile", kDeviceProfileVersion, kDeviceProfileVersion);
  root.allow_only({"version", "device", "peak_flops", "peak_source", "gemm", "attention", "measurements", "notes"});
  DeviceProfile p;
  const common::JsonView dev = root.at("device");
  dev.allow_only({"type", "name", "backend", "threads"});
  p.device_type = dev.at("type").as_enum({"cpu", "cuda"});
  p.device_name = dev.string_or("name", "");
  p.backend = dev.string_or("backend", "");
  p.threads = dev.find("threads") ? dev.at("threads").as_int(1, 1 << 16) : 1;
  p.peak_flops = root.at("peak_flops").as_number(1.0, 1e18);
  p.peak_source = root.at("peak_source").as_enum({"measured", "given"});
  p.gemm = parse_curve(root.at("gemm"));
  p.attention = parse_curve(root.at("attention"));
  if (auto m = root.find("measurements")) p.measurements = m->raw();
  return p;
}

DeviceProfile load_device_profile(const std::string& path) {
  const common::Json doc = common::load_json_file(path);
  return parse_device_profile(doc, path);
}

void set_efficiencies(DeviceProfile& p, const std::vector<std::pair<double, double>>& gemm_rate,
                      const std::vector<std::pair<double, double>>& attention_rate, double given_peak) {
  double best = 0.0;
  for (const auto& [f, rate] : gemm_rate) best = std::max(best, rate);
  p.peak_flops = given_peak > 0 ? given_peak : best;
  p.peak_source = given_peak > 0 ? "given" : "measured";
  auto to_eff = [&](const std::vector<std::pair<double, double>>& rates) {
    std::vector<std::pair<double, double>> eff;
    for (const auto& [f, rate] : rates) eff.emplace_back(f, std::clamp(rate / p.peak_flops, 1e-6, 1.0));
    return make_curve(std::move(eff));
  };
  p.gemm = to_eff(gemm_rate);
  p.attention = to_eff(attention_rate);
}

}  // namespace pipeweaver::cost
