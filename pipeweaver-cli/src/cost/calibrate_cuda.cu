// The CUDA calibration's measurements (interface: calibrate_cuda_bench.hpp): cuBLAS BF16
// GEMMs with F32 accumulation, and attention unfused, as two strided-batched GEMMs around a
// row-softmax kernel. FlashAttention (fused, S never leaves the chip) would be faster; the
// profile describes this backend, "cublas-bf16" with unfused attention. Kept lean: no JSON,
// Eigen or CLI headers (nvcc compiles this file once per architecture).
// cuBLAS is opened on first use (common/cublas_api.hpp), not linked.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cuda_runtime_api.h>
#include <string>
#include <type_traits>
#include <vector>

#include <cuda_bf16.h>

#include "common/cublas_api.hpp"
#include "common/cuda_check.hpp"
#include "common/cuda_handles.hpp"
#include "cost/calibrate_cuda_bench.hpp"

using common::cuda::cublas;
using common::cuda::CublasHandle;
using common::cuda::Stream;

namespace pipeweaver::cost::cuda_bench {

namespace {

using bf16 = __nv_bfloat16;

// ---- Owners of device resources (streams, events and cuBLAS handles: common/cuda_handles.hpp):
// released on every path, errors on release ignored (a failed call has already thrown; the
// release must not throw again).

class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t elements) : bytes_(elements * sizeof(bf16)) {
    void* p = nullptr;
    if (bytes_ > 0) PWPI_CUDA_CHECK(cudaMalloc(&p, bytes_));
    ptr_ = static_cast<bf16*>(p);
  }
  ~DeviceBuffer() {
    if (ptr_) (void)cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  bf16* get() const { return ptr_; }
  std::size_t bytes() const { return bytes_; }

 private:
  bf16* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// ---- Kernels.

__device__ __forceinline__ std::uint32_t mix32(std::uint32_t x) {  // "lowbias32" (C. Wellons)
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

// Uniform in (-1, 1) from a hash of (seed, index), never exactly 0: GEMMs on zeros draw less
// power and clock higher than on real data.
__global__ void fill_uniform(bf16* p, std::size_t n, std::uint32_t seed) {
  const std::size_t stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const std::uint32_t h =
        mix32(static_cast<std::uint32_t>(i) ^ mix32(seed + static_cast<std::uint32_t>(i >> 32)));
    const float u =
        (static_cast<float>(h >> 8) + 0.5f) * (1.0f / 16777216.0f);  // (0, 1), odd multiples of 2^-25
    p[i] = __float2bfloat16(2.0f * u - 1.0f);
  }
}

constexpr int kSoftmaxThreads = 256;  // a multiple of 32 (block_reduce)

template <bool kMax>
__device__ __forceinline__ float combine(float a, float b) {
  return kMax ? fmaxf(a, b) : a + b;
}

// The max or the sum over the block, returned to every thread; `shared` holds >= 32 floats.
template <bool kMax>
__device__ float block_reduce(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v = combine<kMax>(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? shared[lane] : (kMax ? -INFINITY : 0.0f);
    for (int o = 16; o > 0; o >>= 1) v = combine<kMax>(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) shared[0] = v;
  }
  __syncthreads();
  v = shared[0];
  __syncthreads();  // `shared` is reused by the next reduction
  return v;
}

// In place, one block per row of `cols` (BF16 storage, F32 arithmetic): P = softmax(S).
__global__ void __launch_bounds__(kSoftmaxThreads) row_softmax(bf16* s, int cols) {
  __shared__ float shared[32];
  bf16* row = s + static_cast<std::size_t>(blockIdx.x) * static_cast<std::size_t>(cols);
  float m = -INFINITY;
  for (int j = static_cast<int>(threadIdx.x); j < cols; j += kSoftmaxThreads)
    m = fmaxf(m, __bfloat162float(row[j]));
  m = block_reduce<true>(m, shared);
  float sum = 0.0f;
  for (int j = static_cast<int>(threadIdx.x); j < cols; j += kSoftmaxThreads)
    sum += __expf(__bfloat162float(row[j]) - m);
  sum = block_reduce<false>(sum, shared);
  const float inv = 1.0f / sum;
  for (int j = static_cast<int>(threadIdx.x); j < cols; j += kSoftmaxThreads)
    row[j] = __float2bfloat16(__expf(__bfloat162float(row[j]) - m) * inv);
}

// ---- Host side.

void fill(const DeviceBuffer& b, std::size_t n, std::uint32_t seed, cudaStream_t stream) {
  PWPI_CHECK(n * sizeof(bf16) <= b.bytes());
  if (n == 0) return;
  constexpr int kThreads = 256;
  const std::size_t blocks = std::min<std::size_t>((n + kThreads - 1) / kThreads, 4096);
  fill_uniform<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(b.get(), n, seed);
  PWPI_CUDA_CHECK_LAUNCH("fill_uniform");
}

// nn.Linear, row-major y[m,n] = x[m,k] w[n,k]^T. cuBLAS is column-major: it sees y^T [n,m]
// (ld n) = op_T(w stored as [k,n], ld k) * x^T [k,m] (ld k) — PyTorch's "TN" call.
void linear(cublasHandle_t h, const GemmShape& s, const bf16* x, const bf16* w, bf16* y) {
  const float alpha = 1.0f, beta = 0.0f;
  PWPI_CUBLAS_CHECK(cublas().gemm_ex(h, CUBLAS_OP_T, CUBLAS_OP_N, s.n, s.m, s.k, &alpha, w, CUDA_R_16BF, s.k,
                                     x, CUDA_R_16BF, s.k, &beta, y, CUDA_R_16BF, s.n, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
}

// Per head (row-major, [heads, L, d] for Q K V O and [heads, L, L] for S):
//   S = Q K^T / sqrt(d): column-major S^T (ld L) = op_T(K as [d,L]) * (Q as [d,L]);
//   P = softmax(S) in place;
//   O = P V: column-major O^T [d,L] (ld d) = (V as [d,L]) * (P as column-major P^T, ld L).
void attention(cublasHandle_t h, cudaStream_t stream, const AttentionShape& a, const bf16* q, const bf16* k,
               const bf16* v, bf16* s, bf16* o) {
  const int len = a.seq_len, d = a.head_dim;
  const long long qkv_stride = static_cast<long long>(len) * d, s_stride = static_cast<long long>(len) * len;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d)), one = 1.0f, zero = 0.0f;
  PWPI_CUBLAS_CHECK(cublas().gemm_strided_batched_ex(
      h, CUBLAS_OP_T, CUBLAS_OP_N, len, len, d, &scale, k, CUDA_R_16BF, d, qkv_stride, q, CUDA_R_16BF, d,
      qkv_stride, &zero, s, CUDA_R_16BF, len, s_stride, a.heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  const unsigned rows = static_cast<unsigned>(a.heads) * static_cast<unsigned>(len);
  row_softmax<<<rows, kSoftmaxThreads, 0, stream>>>(s, len);
  PWPI_CUDA_CHECK_LAUNCH("row_softmax");
  PWPI_CUBLAS_CHECK(cublas().gemm_strided_batched_ex(
      h, CUBLAS_OP_N, CUBLAS_OP_N, d, len, len, &one, v, CUDA_R_16BF, d, qkv_stride, s, CUDA_R_16BF, len,
      s_stride, &zero, o, CUDA_R_16BF, d, qkv_stride, a.heads, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Seconds per call of `launch` (which enqueues one call on `stream`). Two warm-up calls (cuBLAS
// picks and loads its kernels), one probe call, then event-timed batches of ~1/8 of the budget
// each, at least 3, until the budget is spent. The MEDIAN batch is returned: the sustained
// rate, robust to one disturbed batch (the best would favour a clock-boost burst). Calls
// shorter than the launch overhead (a few us) measure the launch rate, as eager frameworks see it.
template <class Launch>
Timing time_calls(cudaStream_t stream, const Launch& launch, double budget_s) {
  common::cuda::Event start, stop;
  launch();
  launch();
  PWPI_CUDA_CHECK(cudaStreamSynchronize(stream));
  auto timed_s = [&](int reps) {
    PWPI_CUDA_CHECK(cudaEventRecord(start.get(), stream));
    for (int r = 0; r < reps; ++r) launch();
    PWPI_CUDA_CHECK(cudaEventRecord(stop.get(), stream));
    PWPI_CUDA_CHECK(cudaEventSynchronize(stop.get()));
    float ms = 0.0f;
    PWPI_CUDA_CHECK(cudaEventElapsedTime(&ms, start.get(), stop.get()));
    return 1e-3 * static_cast<double>(ms);
  };
  const double probe_s = std::max(timed_s(1), 1e-6);
  const int reps = static_cast<int>(std::clamp(budget_s / 8.0 / probe_s, 1.0, 100000.0));
  std::vector<double> per_call;
  double spent_s = probe_s;
  while (per_call.size() < 3 || (spent_s < budget_s && per_call.size() < 1000)) {
    const double batch_s = timed_s(reps);
    spent_s += batch_s;
    per_call.push_back(batch_s / reps);
  }
  std::sort(per_call.begin(), per_call.end());
  const std::size_t n = per_call.size();
  Timing t;
  t.seconds = n % 2 ? per_call[n / 2] : 0.5 * (per_call[n / 2 - 1] + per_call[n / 2]);
  t.batches = static_cast<int>(n);
  t.calls = reps * t.batches;
  return t;
}

double bf16_to_double(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f = 0.0f;
  std::memcpy(&f, &u, sizeof f);
  return static_cast<double>(f);
}

// The buffer's first `n` values, as doubles; the stream must be idle.
std::vector<double> to_host(const DeviceBuffer& b, std::size_t n) {
  PWPI_CHECK(n * sizeof(bf16) <= b.bytes());
  std::vector<std::uint16_t> bits(n);
  PWPI_CUDA_CHECK(cudaMemcpy(bits.data(), b.get(), n * sizeof(bf16), cudaMemcpyDeviceToHost));
  std::vector<double> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = bf16_to_double(bits[i]);
  return out;
}

double rel_error(const std::vector<double>& got, const std::vector<double>& ref) {
  PWPI_CHECK(got.size() == ref.size());
  double diff = 0.0, norm = 0.0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    diff += (got[i] - ref[i]) * (got[i] - ref[i]);
    norm += ref[i] * ref[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

}  // namespace

std::string cublas_library() { return common::cuda::cublas_description(); }

Timings run(const std::vector<GemmShape>& gemms, const std::vector<AttentionShape>& attn,
            double seconds_per_shape, const std::function<void()>& shape_done) {
  PWPI_CUDA_CHECK(cudaSetDevice(0));
  Stream stream;
  CublasHandle blas(stream.get());
  Timings t;
  if (!gemms.empty()) {
    std::size_t max_x = 0, max_w = 0, max_y = 0;  // elements
    const GemmShape* biggest = &gemms.front();
    for (const GemmShape& s : gemms) {
      PWPI_CHECK(s.m > 0 && s.n > 0 && s.k > 0);
      max_x = std::max(max_x, static_cast<std::size_t>(s.m) * static_cast<std::size_t>(s.k));
      max_w = std::max(max_w, static_cast<std::size_t>(s.n) * static_cast<std::size_t>(s.k));
      max_y = std::max(max_y, static_cast<std::size_t>(s.m) * static_cast<std::size_t>(s.n));
      if (1.0 * s.m * s.n * s.k > 1.0 * biggest->m * biggest->n * biggest->k) biggest = &s;
    }
    DeviceBuffer x(max_x), w(max_w), y(max_y);
    fill(x, max_x, 1, stream.get());
    fill(w, max_w, 2, stream.get());
    const auto gemm = [&](const GemmShape& s) {
      return [&blas, &x, &w, &y, s] { linear(blas.get(), s, x.get(), w.get(), y.get()); };
    };
    // Clock spin-up, discarded: the first shapes are not timed at idle clocks.
    (void)time_calls(stream.get(), gemm(*biggest), std::max(0.1, seconds_per_shape));
    for (const GemmShape& s : gemms) {
      t.gemm.push_back(time_calls(stream.get(), gemm(s), seconds_per_shape));
      if (shape_done) shape_done();
    }
  }
  if (!attn.empty()) {
    std::size_t max_qkv = 0, max_s = 0;  // elements
    for (const AttentionShape& a : attn) {
      PWPI_CHECK(a.seq_len > 0 && a.heads > 0 && a.head_dim > 0);
      const std::size_t len = static_cast<std::size_t>(a.seq_len), heads = static_cast<std::size_t>(a.heads);
      max_qkv = std::max(max_qkv, heads * len * static_cast<std::size_t>(a.head_dim));
      max_s = std::max(max_s, heads * len * len);
    }
    DeviceBuffer q(max_qkv), k(max_qkv), v(max_qkv), o(max_qkv), s(max_s);
    fill(q, max_qkv, 3, stream.get());
    fill(k, max_qkv, 4, stream.get());
    fill(v, max_qkv, 5, stream.get());
    for (const AttentionShape& a : attn) {
      t.attention.push_back(time_calls(
          stream.get(),
          [&] { attention(blas.get(), stream.get(), a, q.get(), k.get(), v.get(), s.get(), o.get()); },
          seconds_per_shape));
      if (shape_done) shape_done();
    }
  }
  PWPI_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  return t;
}

double gemm_rel_error(int m, int n, int k) {
  PWPI_CHECK(m > 0 && n > 0 && k > 0);
  PWPI_CUDA_CHECK(cudaSetDevice(0));
  Stream stream;
  CublasHandle blas(stream.get());
  const std::size_t mk = static_cast<std::size_t>(m) * k, nk = static_cast<std::size_t>(n) * k,
                    mn = static_cast<std::size_t>(m) * n;
  DeviceBuffer x(mk), w(nk), y(mn);
  fill(x, mk, 11, stream.get());
  fill(w, nk, 12, stream.get());
  linear(blas.get(), GemmShape{m, n, k}, x.get(), w.get(), y.get());
  PWPI_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  const std::vector<double> hx = to_host(x, mk), hw = to_host(w, nk), hy = to_host(y, mn);
  std::vector<double> ref(mn, 0.0);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double acc = 0.0;
      for (int t = 0; t < k; ++t)
        acc += hx[static_cast<std::size_t>(i) * k + t] * hw[static_cast<std::size_t>(j) * k + t];
      ref[static_cast<std::size_t>(i) * n + j] = acc;
    }
  return rel_error(hy, ref);
}

double attention_rel_error(int seq_len, int heads, int head_dim) {
  PWPI_CHECK(seq_len > 0 && heads > 0 && head_dim > 0);
  PWPI_CUDA_CHECK(cudaSetDevice(0));
  Stream stream;
  CublasHandle blas(stream.get());
  const std::size_t len = static_cast<std::size_t>(seq_len), d = static_cast<std::size_t>(head_dim);
  const std::size_t qkv = static_cast<std::size_t>(heads) * len * d,
                    ss = static_cast<std::size_t>(heads) * len * len;
  DeviceBuffer q(qkv), k(qkv), v(qkv), o(qkv), s(ss);
  fill(q, qkv, 13, stream.get());
  fill(k, qkv, 14, stream.get());
  fill(v, qkv, 15, stream.get());
  attention(blas.get(), stream.get(), AttentionShape{seq_len, heads, head_dim}, q.get(), k.get(), v.get(),
            s.get(), o.get());
  PWPI_CUDA_CHECK(cudaStreamSynchronize(stream.get()));
  const std::vector<double> hq = to_host(q, qkv), hk = to_host(k, qkv), hv = to_host(v, qkv),
                            ho = to_host(o, qkv);
  std::vector<double> ref(qkv, 0.0), p(len);
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  for (std::size_t h = 0; h < static_cast<std::size_t>(heads); ++h) {
    const std::size_t base = h * len * d;
    for (std::size_t i = 0; i < len; ++i) {
      double mx = -INFINITY;
      for (std::size_t j = 0; j < len; ++j) {
        double dot = 0.0;
        for (std::size_t t = 0; t < d; ++t) dot += hq[base + i * d + t] * hk[base + j * d + t];
        p[j] = dot * scale;
        mx = std::max(mx, p[j]);
      }
      double sum = 0.0;
      for (std::size_t j = 0; j < len; ++j) sum += (p[j] = std::exp(p[j] - mx));
      for (std::size_t j = 0; j < len; ++j)
        for (std::size_t t = 0; t < d; ++t) ref[base + i * d + t] += p[j] / sum * hv[base + j * d + t];
    }
  }
  return rel_error(ho, ref);
}

}  // namespace pipeweaver::cost::cuda_bench
