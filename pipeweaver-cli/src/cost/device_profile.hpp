// A device profile: what a calibration run measured on one device — its peak and how much
// of it GEMMs and attention reach as a function of the work per call. The cost model uses
// its efficiency curves in place of the cluster spec's constant efficiencies.
// File format "pipeweaver device profile", version 1 (docs/formats.md, "Device profile").
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/json_io.hpp"

namespace pipeweaver::cost {

/// Efficiency (achieved / peak) against FLOPs per call, piecewise linear in log10(FLOPs),
/// constant beyond the first and last points.
struct EfficiencyCurve {
  std::vector<std::pair<double, double>> points;  // (flops per call, efficiency), flops ascending

  bool empty() const { return points.empty(); }
  double at(double flops_per_call) const;
};

struct DeviceProfile {
  std::string device_type;  // "cpu" (Eigen, this build) or "cuda" (a later backend)
  std::string device_name;  // e.g. the CPU model
  std::string backend;      // e.g. "eigen-f32"
  std::int64_t threads = 1;
  double peak_flops = 0.0;   // FLOP/s the efficiencies are relative to
  std::string peak_source;   // "measured" (the best call) or "given"
  EfficiencyCurve gemm;
  EfficiencyCurve attention;
  common::Json measurements = common::Json::object();  // raw timings, informative
};

inline constexpr std::int64_t kDeviceProfileVersion = 1;

common::Json to_json(const DeviceProfile& profile);
/// Parses and validates; errors name `file` and the JSON pointer.
DeviceProfile parse_device_profile(const common::Json& doc, const std::string& file);
DeviceProfile load_device_profile(const std::string& path);

/// Sets p.peak_flops (given_peak when > 0, "given"; else the best GEMM rate, "measured") and
/// the GEMM and attention curves from measured (flops per call, FLOP/s) rates.
void set_efficiencies(DeviceProfile& p, const std::vector<std::pair<double, double>>& gemm_rate,
                      const std::vector<std::pair<double, double>>& attention_rate, double given_peak);

/// Turns raw (flops per call, efficiency) samples into a curve: samples are grouped into
/// bins of `bins_per_decade` per decade of FLOPs, each bin's mean becomes one point.
EfficiencyCurve make_curve(std::vector<std::pair<double, double>> samples, int bins_per_decade = 2);

}  // namespace pipeweaver::cost
