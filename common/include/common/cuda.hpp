// The CUDA device as both tools see it, through a plain C++ interface: whether this build has
// CUDA, whether a device is present, and what it is. Callable from any build; without CUDA it
// answers "not compiled". Kernels live with the tool that uses them (powerinfer2-cli/src/cuda,
// pipeweaver-cli/src/cost); .cu files check their calls with common/cuda_check.hpp.
#pragma once

#include <cstdint>
#include <string>

namespace common::cuda {

/// Whether this build compiled its CUDA sources.
bool compiled();

/// Usable CUDA devices: 0 when none (or no CUDA in this build), with the reason in *why.
int device_count(std::string* why = nullptr);

struct DeviceInfo {
  std::string name;                  // e.g. "NVIDIA H100 80GB HBM3"
  int compute_major = 0, compute_minor = 0;
  int multiprocessors = 0;
  std::uint64_t total_memory_bytes = 0, free_memory_bytes = 0;
};

/// Device 0's properties; IoError when there is no device.
DeviceInfo device_info();

/// "no CUDA device: <reason>" for skip messages and refusals.
std::string no_device_message();

}  // namespace common::cuda
