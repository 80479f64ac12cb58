// Checks for CUDA runtime and cuBLAS calls, for .cu files: a failed call throws
// common::IoError naming the call and CUDA's message (exit code 4 at the CLI boundary).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "common/errors.hpp"

namespace common::cuda {

[[noreturn]] inline void cuda_failed(const char* call, int code, const char* message) {
  throw common::IoError("cuda device", std::string(call), std::string(message) + " (code " + std::to_string(code) + ")");
}

}  // namespace common::cuda

/// PWPI_CUDA_CHECK(cudaMalloc(&p, n)): throws on anything but cudaSuccess.
#define PWPI_CUDA_CHECK(call)                                                          \
  do {                                                                                 \
    const cudaError_t pwpi_cuda_err_ = (call);                                         \
    if (pwpi_cuda_err_ != cudaSuccess) [[unlikely]]                                    \
      ::common::cuda::cuda_failed(#call, static_cast<int>(pwpi_cuda_err_),             \
                                  cudaGetErrorString(pwpi_cuda_err_));                 \
  } while (0)

/// After a kernel launch: the launch's own error (bad configuration), without waiting.
#define PWPI_CUDA_CHECK_LAUNCH(what) PWPI_CUDA_CHECK(cudaGetLastError())
