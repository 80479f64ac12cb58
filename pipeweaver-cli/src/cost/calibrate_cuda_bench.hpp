// What calibrate_cuda.cu measures, as plain types: the .cu stays free of the JSON and
// profile headers (nvcc compiles it once per architecture), and calibrate_cuda_profile.cpp
// turns the timings into a DeviceProfile. Without CUDA, calibrate_cuda_none.cpp defines
// these functions to throw.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace pipeweaver::cost::cuda_bench {

/// One linear layer, nn.Linear's layout: y[m,n] = x[m,k] w[n,k]^T, row-major, BF16 in and
/// out, F32 accumulation (cublasGemmEx, CUBLAS_COMPUTE_32F).
struct GemmShape {
  int m = 0, n = 0, k = 0;
};

/// Unfused attention over `heads` independent heads (batch x heads): S = Q K^T / sqrt(d),
/// row softmax, O = P V; Q, K, V, S, P, O in BF16, GEMMs accumulating in F32.
struct AttentionShape {
  int seq_len = 0, heads = 0, head_dim = 0;
};

struct Timing {
  double seconds = 0.0;  // per call: the median of the event-timed batches
  int calls = 0;         // timed calls, over all batches
  int batches = 0;
};

struct Timings {
  std::vector<Timing> gemm;       // one per GemmShape, same order
  std::vector<Timing> attention;  // one per AttentionShape
};

/// Opens cuBLAS (dlopen, once per process; no device needed) and names it with its version,
/// e.g. "libcublas.so.13 (cuBLAS 13.0.2)". Throws common::IoError when it cannot be loaded.
std::string cublas_library();

/// Times every shape on device 0 for about `seconds_per_shape` each; `shape_done()` is called
/// after each. Throws common::IoError when a CUDA or cuBLAS call fails (device memory is
/// freed first).
Timings run(const std::vector<GemmShape>& gemms, const std::vector<AttentionShape>& attention,
            double seconds_per_shape, const std::function<void()>& shape_done);

/// The benchmark's GEMM on random data against a double-precision CPU reference computed
/// from the same BF16 inputs: ||y - ref||_F / ||ref||_F.
double gemm_rel_error(int m, int n, int k);

/// The benchmark's unfused attention against a double-precision CPU reference, same norm.
double attention_rel_error(int seq_len, int heads, int head_dim);

}  // namespace pipeweaver::cost::cuda_bench
