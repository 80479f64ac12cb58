// Owners of a CUDA stream, a CUDA event and a cuBLAS handle bound to a stream, for .cu / CUDA-aware sources
// of both tools. Released on every path; errors on release are ignored (a failed call has
// already thrown, and the release must not throw again).
#pragma once

#include <cuda_runtime_api.h>

#include "common/cublas_api.hpp"
#include "common/cuda_check.hpp"

namespace common::cuda {

/// A non-blocking stream.
class Stream {
 public:
  Stream() { PWPI_CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { (void)cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
};

/// An event (default flags: timing enabled).
class Event {
 public:
  Event() { PWPI_CUDA_CHECK(cudaEventCreate(&e_)); }
  ~Event() { (void)cudaEventDestroy(e_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return e_; }

 private:
  cudaEvent_t e_ = nullptr;
};

/// A cuBLAS handle working on `stream` (cuBLAS opened on first use; the handle is destroyed
/// again when binding it to the stream fails).
class CublasHandle {
 public:
  explicit CublasHandle(cudaStream_t stream) {
    PWPI_CUBLAS_CHECK(cublas().create(&h_));
    const cublasStatus_t st = cublas().set_stream(h_, stream);
    if (st != CUBLAS_STATUS_SUCCESS) {
      (void)cublas().destroy(h_);
      cuda_failed("cublasSetStream", static_cast<int>(st), cublas().status_string(st));
    }
  }
  ~CublasHandle() { (void)cublas().destroy(h_); }
  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  cublasHandle_t get() const { return h_; }

 private:
  cublasHandle_t h_ = nullptr;
};

}  // namespace common::cuda
