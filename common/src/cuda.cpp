#include "common/cuda.hpp"

#include "common/errors.hpp"

#ifdef PWPI_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace common::cuda {

#ifdef PWPI_HAVE_CUDA

bool compiled() { return true; }

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why) *why = cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky error of a failed driver load
    return 0;
  }
  if (n == 0 && why) *why = "the CUDA runtime lists no device";
  return n;
}

DeviceInfo device_info() {
  std::string why;
  if (device_count(&why) == 0) throw IoError("cuda device 0", "query the device", why);
  cudaDeviceProp p{};
  cudaError_t e = cudaGetDeviceProperties(&p, 0);
  if (e != cudaSuccess) throw IoError("cuda device 0", "cudaGetDeviceProperties", cudaGetErrorString(e));
  DeviceInfo d;
  d.name = p.name;
  d.compute_major = p.major;
  d.compute_minor = p.minor;
  d.multiprocessors = p.multiProcessorCount;
  std::size_t free_b = 0, total_b = 0;
  e = cudaMemGetInfo(&free_b, &total_b);
  if (e != cudaSuccess) throw IoError("cuda device 0", "cudaMemGetInfo", cudaGetErrorString(e));
  d.free_memory_bytes = free_b;
  d.total_memory_bytes = total_b;
  return d;
}

#else

bool compiled() { return false; }

int device_count(std::string* why) {
  if (why) *why = "this build has no CUDA support (no CUDA compiler was found, or PWPI_CUDA=OFF)";
  return 0;
}

DeviceInfo device_info() {
  throw IoError("cuda device 0", "query the device", "this build has no CUDA support");
}

#endif

std::string no_device_message() {
  std::string why;
  if (device_count(&why) > 0) return {};
  return "no CUDA device: " + why;
}

}  // namespace common::cuda
