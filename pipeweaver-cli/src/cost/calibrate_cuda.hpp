// Calibration on a CUDA device: cuBLAS BF16 GEMMs (F32 accumulation) over transformer-layer
// shapes and unfused attention, measured with CUDA events, into the same DeviceProfile the
// CPU calibration writes, with device type "cuda" and backend "cublas-bf16".
#pragma once

#include <functional>
#include <string>

#include "cost/calibrate.hpp"

namespace pipeweaver::cost {

/// Runs the measurements on device 0; `progress(done, total)` is called after each shape.
/// Honours quick, peak_flops, seconds_per_shape (0 = 0.04 s quick, 0.25 s default) and
/// max_dim. Throws common::IoError ("... no CUDA device: <why>") when there is no device or
/// the build has no CUDA, and when a CUDA or cuBLAS call fails.
DeviceProfile calibrate_cuda(const CalibrationOptions& options,
                             const std::function<void(int done, int total)>& progress = {});

/// Test hooks: the calibration's GEMM (y = x w^T, BF16 in and out) and unfused attention on
/// random data, against a double-precision CPU reference from the same BF16 inputs; the
/// relative Frobenius error ||got - ref|| / ||ref||. Same errors as calibrate_cuda.
double cuda_gemm_check_rel_error(int m, int n, int k);
double cuda_attention_check_rel_error(int seq_len, int heads, int head_dim);

/// cuBLAS as the CUDA calibration loads it (dlopen, no device needed), e.g.
/// "libcublas.so.13 (cuBLAS 13.0.2)"; IoError when it cannot be loaded or the build has no CUDA.
std::string cuda_cublas_library();

}  // namespace pipeweaver::cost
