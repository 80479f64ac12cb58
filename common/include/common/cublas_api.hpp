// cuBLAS, opened with dlopen on first use instead of linked: linked, its libraries
// (libcublasLt alone is ~540 MB) cost every start of a tool ~0.1 s and ~200 MB of RSS, CPU-only
// commands included, and a sparse engine's RSS is measured against its memory budget.
// For .cu / CUDA-aware sources only (includes cublas_v2.h).
#pragma once

#include <cublas_v2.h>

#include <string>

#include "common/cuda_check.hpp"

namespace common::cuda {

using CublasCreateFn = cublasStatus_t (*)(cublasHandle_t*);
using CublasDestroyFn = cublasStatus_t (*)(cublasHandle_t);
using CublasSetStreamFn = cublasStatus_t (*)(cublasHandle_t, cudaStream_t);
using CublasStatusStringFn = const char* (*)(cublasStatus_t);
using CublasGetPropertyFn = cublasStatus_t (*)(libraryPropertyType, int*);
using CublasGemmExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                                          const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                                          int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                                          cublasGemmAlgo_t);
using CublasGemmStridedBatchedExFn = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int,
                                                        int, int, const void*, const void*, cudaDataType, int,
                                                        long long, const void*, cudaDataType, int, long long,
                                                        const void*, void*, cudaDataType, int, long long, int,
                                                        cublasComputeType_t, cublasGemmAlgo_t);

/// The cuBLAS functions the tools call, resolved from the library.
struct CublasApi {
  std::string library;  // the file opened, e.g. "libcublas.so.13"
  CublasCreateFn create = nullptr;
  CublasDestroyFn destroy = nullptr;
  CublasSetStreamFn set_stream = nullptr;
  CublasStatusStringFn status_string = nullptr;
  CublasGetPropertyFn get_property = nullptr;
  CublasGemmExFn gemm_ex = nullptr;
  CublasGemmStridedBatchedExFn gemm_strided_batched_ex = nullptr;
};

/// Loaded once, on first call (IoError naming the library when it cannot be opened or lacks
/// a function; a failed load is retried on the next call).
const CublasApi& cublas();

/// "libcublas.so.13 (cuBLAS 13.0.2)": loads the library.
std::string cublas_description();

}  // namespace common::cuda

/// PWPI_CUBLAS_CHECK(common::cuda::cublas().create(&h)): throws common::IoError on anything
/// but CUBLAS_STATUS_SUCCESS.
#define PWPI_CUBLAS_CHECK(call)                                                               \
  do {                                                                                        \
    const cublasStatus_t pwpi_cublas_st_ = (call);                                            \
    if (pwpi_cublas_st_ != CUBLAS_STATUS_SUCCESS) [[unlikely]]                                \
      ::common::cuda::cuda_failed(#call, static_cast<int>(pwpi_cublas_st_),                   \
                                  ::common::cuda::cublas().status_string(pwpi_cublas_st_));   \
  } while (0)
