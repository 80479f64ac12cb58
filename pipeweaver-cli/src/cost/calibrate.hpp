// Calibration: measures this machine's achieved GEMM and attention throughput (Eigen,
// float32, on the CPU) over a grid of shapes and turns it into a DeviceProfile whose
// efficiency curves the cost model can use. A CUDA backend would produce the same profile
// format with device type "cuda".
#pragma once

#include <functional>

#include "cost/device_profile.hpp"

namespace pipeweaver::cost {

struct CalibrationOptions {
  bool quick = false;             // a small grid and short timings (~ a few seconds)
  double peak_flops = 0.0;        // > 0: efficiencies relative to this; else to the best call measured
  double seconds_per_shape = 0.0; // timing budget per shape; 0 = 0.04 s quick, 0.25 s default
  int max_dim = 0;                // > 0: skip shapes with a dimension above this (tests)
};

/// Runs the measurements; `progress(done, total)` is called after each shape.
DeviceProfile calibrate(const CalibrationOptions& options,
                        const std::function<void(int done, int total)>& progress = {});

}  // namespace pipeweaver::cost
