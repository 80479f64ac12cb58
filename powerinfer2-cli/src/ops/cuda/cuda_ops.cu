#include "ops/cuda/cuda_ops.hpp"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <string>

#include "common/cublas_api.hpp"
#include "common/cuda.hpp"
#include "common/cuda_check.hpp"
#include "common/cuda_handles.hpp"
#include "common/errors.hpp"

namespace powerinfer2::ops::cuda {

namespace {

// The weight types the kernels are instantiated for.
enum class Kind : int { f32, f16, q8_0, q4_0 };

Kind kind_of(io::GgmlType t) {
  switch (t) {
    case io::GgmlType::F32: return Kind::f32;
    case io::GgmlType::F16: return Kind::f16;
    case io::GgmlType::Q8_0: return Kind::q8_0;
    case io::GgmlType::Q4_0: return Kind::q4_0;
    default: break;
  }
  throw common::UsageError("the CUDA kernels do not take weight type " + std::string(io::ggml_type_name(t)),
                           "quantize the model to F32, F16, Q8_0 or Q4_0");
}

std::size_t row_bytes_of(Kind k, std::size_t n_cols) {
  switch (k) {
    case Kind::f32: return 4 * n_cols;
    case Kind::f16: return 2 * n_cols;
    case Kind::q8_0: return n_cols / 32 * 34;
    case Kind::q4_0: return n_cols / 32 * 18;
  }
  return 0;
}

constexpr int kThreads = 256;

unsigned grid_for(std::size_t items, int threads = kThreads) {
  const std::size_t blocks = (items + threads - 1) / threads;
  return static_cast<unsigned>(std::min<std::size_t>(std::max<std::size_t>(blocks, 1), 1u << 20));
}

__device__ __forceinline__ float half_at(const std::uint8_t* p) {
  return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short*>(p)));
}

// Element i of a row of kind K (the CPU's dequantize: Q8_0 d * q, Q4_0 d * (q - 8)).
template <Kind K>
__device__ __forceinline__ float element(const std::uint8_t* row, std::size_t i) {
  if constexpr (K == Kind::f32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (K == Kind::f16) {
    return half_at(row + 2 * i);
  } else if constexpr (K == Kind::q8_0) {
    const std::uint8_t* b = row + (i / 32) * 34;
    return half_at(b) * static_cast<float>(static_cast<std::int8_t>(b[2 + i % 32]));
  } else {
    const std::uint8_t* b = row + (i / 32) * 18;
    const unsigned j = static_cast<unsigned>(i % 32);
    const unsigned q = b[2 + (j & 15u)];
    const int v = static_cast<int>(j < 16 ? (q & 15u) : (q >> 4)) - 8;
    return half_at(b) * static_cast<float>(v);
  }
}

// This lane's share of a row . x over dim elements (the warp sums the shares).
template <Kind K>
__device__ __forceinline__ float row_dot_share(const std::uint8_t* row, const float* x, int dim, int lane) {
  float s = 0.0f;
  if constexpr (K == Kind::f32 || K == Kind::f16) {
    for (int i = lane; i < dim; i += 32) s += element<K>(row, i) * x[i];
  } else if constexpr (K == Kind::q8_0) {
    for (int b = lane; b < dim / 32; b += 32) {
      const std::uint8_t* blk = row + static_cast<std::size_t>(b) * 34;
      const float* xb = x + b * 32;
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < 32; ++j) acc += static_cast<float>(static_cast<std::int8_t>(blk[2 + j])) * xb[j];
      s += half_at(blk) * acc;
    }
  } else {
    for (int b = lane; b < dim / 32; b += 32) {
      const std::uint8_t* blk = row + static_cast<std::size_t>(b) * 18;
      const float* xb = x + b * 32;
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < 16; ++j) {
        const unsigned q = blk[2 + j];
        acc += static_cast<float>(static_cast<int>(q & 15u) - 8) * xb[j] +
               static_cast<float>(static_cast<int>(q >> 4) - 8) * xb[j + 16];
      }
      s += half_at(blk) * acc;
    }
  }
  return s;
}

__device__ __forceinline__ float activate(int act, float g, float u) {
  switch (act) {
    case 0: return g / (1.0f + expf(-g)) * u;           // swiglu
    case 1: return g > 0.0f ? g * u : 0.0f;             // reglu
    default: return g > 0.0f && u > 0.0f ? g * u : 0.0f;  // drelu
  }
}

template <Kind K>
__global__ void dequant_kernel(const std::uint8_t* __restrict__ src, std::size_t row_bytes, std::size_t n_cols,
                               std::size_t total, float* __restrict__ dst) {
  for (std::size_t e = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const std::size_t r = e / n_cols, c = e % n_cols;
    dst[e] = element<K>(src + r * row_bytes, c);
  }
}

__global__ void activate_kernel(float* __restrict__ g, const float* __restrict__ u, std::size_t n, int act) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    g[i] = activate(act, g[i], u[i]);
}

// One block per row: the sum of squares in double (as the CPU), then x * scale * w.
__global__ void rmsnorm_kernel(const float* __restrict__ x, const float* __restrict__ w, int dim, float eps,
                               float* __restrict__ out) {
  const float* xr = x + static_cast<std::size_t>(blockIdx.x) * dim;
  float* o = out + static_cast<std::size_t>(blockIdx.x) * dim;
  double ss = 0.0;
  for (int d = static_cast<int>(threadIdx.x); d < dim; d += static_cast<int>(blockDim.x))
    ss += static_cast<double>(xr[d]) * xr[d];
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  __shared__ double warp_sums[32];
  __shared__ float scale_s;
  const int warp = static_cast<int>(threadIdx.x / 32), lane = static_cast<int>(threadIdx.x % 32);
  if (lane == 0) warp_sums[warp] = ss;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0.0;
    for (int i = 0; i < static_cast<int>(blockDim.x / 32); ++i) total += warp_sums[i];
    scale_s = static_cast<float>(1.0 / sqrt(total / dim + static_cast<double>(eps)));
  }
  __syncthreads();
  const float scale = scale_s;
  for (int d = static_cast<int>(threadIdx.x); d < dim; d += static_cast<int>(blockDim.x)) o[d] = xr[d] * scale * w[d];
}

__global__ void rope_kernel(float* __restrict__ x, int n, int row_stride, int n_head, int head_dim, int half,
                            const float* __restrict__ cos_t, const float* __restrict__ sin_t) {
  const std::size_t idx = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x;
  const std::size_t total = static_cast<std::size_t>(n) * n_head * half;
  if (idx >= total) return;
  const int i = static_cast<int>(idx % half);
  const int h = static_cast<int>((idx / half) % n_head);
  const int t = static_cast<int>(idx / (static_cast<std::size_t>(half) * n_head));
  float* xh = x + static_cast<std::size_t>(t) * row_stride + static_cast<std::size_t>(h) * head_dim;
  const float c = cos_t[static_cast<std::size_t>(t) * half + i], s = sin_t[static_cast<std::size_t>(t) * half + i];
  const float x0 = xh[2 * i], x1 = xh[2 * i + 1];
  xh[2 * i] = x0 * c - x1 * s;
  xh[2 * i + 1] = x0 * s + x1 * c;
}

constexpr int kMaxDimsPerLane = 4;  // head_dim <= 128

// One warp per (query, head): online softmax over the causal positions, the head's dims split
// over the lanes.
__global__ void attention_kernel(const float* __restrict__ q, const float* __restrict__ k,
                                 const float* __restrict__ v, int n, int pos0, int n_head, int group, int head_dim,
                                 int q_stride, int kv_stride, float scale, float* __restrict__ out) {
  const int p = static_cast<int>(blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32);
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (p >= n * n_head) return;  // whole warps
  const int i = p / n_head, h = p % n_head, kvh = h / group;
  const float* qi = q + static_cast<std::size_t>(i) * q_stride + static_cast<std::size_t>(h) * head_dim;
  float qd[kMaxDimsPerLane], acc[kMaxDimsPerLane];
#pragma unroll
  for (int r = 0; r < kMaxDimsPerLane; ++r) {
    const int d = lane + 32 * r;
    qd[r] = d < head_dim ? qi[d] : 0.0f;
    acc[r] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int n_pos = pos0 + i + 1;
  const std::size_t head_off = static_cast<std::size_t>(kvh) * head_dim;
  int t0 = 0;
  for (; t0 + 4 <= n_pos; t0 += 4) {  // four positions at a time: independent loads in flight
    float s4[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) {
      const float* kt = k + static_cast<std::size_t>(t0 + u) * kv_stride + head_off;
      float s = 0.0f;
#pragma unroll
      for (int r = 0; r < kMaxDimsPerLane; ++r) {
        const int d = lane + 32 * r;
        if (d < head_dim) s += qd[r] * kt[d];
      }
      s4[u] = s;
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1)
#pragma unroll
      for (int u = 0; u < 4; ++u) s4[u] += __shfl_xor_sync(0xffffffffu, s4[u], off);
#pragma unroll
    for (int u = 0; u < 4; ++u) s4[u] *= scale;
    const float m_new = fmaxf(m, fmaxf(fmaxf(s4[0], s4[1]), fmaxf(s4[2], s4[3])));
    const float corr = expf(m - m_new);
    float e4[4];
#pragma unroll
    for (int u = 0; u < 4; ++u) e4[u] = expf(s4[u] - m_new);
    l = l * corr + ((e4[0] + e4[1]) + (e4[2] + e4[3]));
#pragma unroll
    for (int r = 0; r < kMaxDimsPerLane; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) {
        float a = acc[r] * corr;
#pragma unroll
        for (int u = 0; u < 4; ++u) a += e4[u] * v[static_cast<std::size_t>(t0 + u) * kv_stride + head_off + d];
        acc[r] = a;
      }
    }
    m = m_new;
  }
  for (int t = t0; t < n_pos; ++t) {
    const float* kt = k + static_cast<std::size_t>(t) * kv_stride + static_cast<std::size_t>(kvh) * head_dim;
    const float* vt = v + static_cast<std::size_t>(t) * kv_stride + static_cast<std::size_t>(kvh) * head_dim;
    float s = 0.0f;
#pragma unroll
    for (int r = 0; r < kMaxDimsPerLane; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) s += qd[r] * kt[d];
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
    s *= scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), e = expf(s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int r = 0; r < kMaxDimsPerLane; ++r) {
      const int d = lane + 32 * r;
      if (d < head_dim) acc[r] = acc[r] * corr + e * vt[d];
    }
    m = m_new;
  }
  float* o = out + static_cast<std::size_t>(i) * q_stride + static_cast<std::size_t>(h) * head_dim;
#pragma unroll
  for (int r = 0; r < kMaxDimsPerLane; ++r) {
    const int d = lane + 32 * r;
    if (d < head_dim) o[d] = acc[r] / l;
  }
}

__global__ void add_kernel(float* __restrict__ x, const float* __restrict__ y, std::size_t n) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

// One warp per neuron: h[t][j] = act(gate_j . x_t, up_j . x_t) for the n tokens.
template <Kind K>
__global__ void neuron_h_kernel(const std::uint8_t* __restrict__ bundles, std::size_t stride, std::size_t up_offset,
                                int count, int dim, const float* __restrict__ x, int n, int act, float* __restrict__ h) {
  const int j = static_cast<int>((blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x) / 32);
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (j >= count) return;  // whole warps: j is the same on every lane
  const std::uint8_t* gate = bundles + static_cast<std::size_t>(j) * stride;
  const std::uint8_t* up = gate + up_offset;
  for (int t = 0; t < n; ++t) {
    const float* xt = x + static_cast<std::size_t>(t) * dim;
    float g = row_dot_share<K>(gate, xt, dim, lane);
    float u = row_dot_share<K>(up, xt, dim, lane);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      g += __shfl_xor_sync(0xffffffffu, g, o);
      u += __shfl_xor_sync(0xffffffffu, u, o);
    }
    if (lane == 0) h[static_cast<std::size_t>(t) * count + j] = activate(act, g, u);
  }
}

constexpr int kDownTokens = 8;   // tokens per down launch (accumulators per thread)
constexpr int kDownThreads = 128;
// Neurons are split into up to kMaxSlices slices, one block row each: every thread's chain of
// dependent loads stays short (a layer's 5632 neurons: 22 per thread), which is what bounds
// this kernel (one token moves a few MB; the latency of 88 loads in a row was 100+ us).
constexpr int kMaxSlices = 256;
constexpr int kMaxSlice = 64;    // neurons per slice at most (shared memory: kDownTokens x kMaxSlice)

// Slices for `count` neurons: 8 neurons per slice up to kMaxSlices slices, then more slices as
// needed to keep each within kMaxSlice.
int slices_for(int count) {
  const int s = std::clamp((count + 7) / 8, 1, kMaxSlices);
  return std::max(s, (count + kMaxSlice - 1) / kMaxSlice);
}

// partial[s][k][d] = sum over neurons j of slice s of h[t0 + k][j] * down_j[d], k < nt.
template <Kind K>
__global__ void neuron_down_kernel(const std::uint8_t* __restrict__ bundles, std::size_t stride,
                                   std::size_t down_offset, int count, int dim, const float* __restrict__ h, int t0,
                                   int nt, int slice, float* __restrict__ partial) {
  __shared__ float hs[kDownTokens][kMaxSlice];
  __shared__ int live[kMaxSlice];
  const int s = static_cast<int>(blockIdx.y);
  const int j0 = s * slice, j1 = min(count, j0 + slice), len = max(j1 - j0, 0);
  for (int i = static_cast<int>(threadIdx.x); i < kDownTokens * kMaxSlice; i += static_cast<int>(blockDim.x)) {
    const int k = i / kMaxSlice, jj = i % kMaxSlice;
    hs[k][jj] = k < nt && jj < len ? h[static_cast<std::size_t>(t0 + k) * count + j0 + jj] : 0.0f;
  }
  __syncthreads();
  // The slice's neurons with a non-zero coefficient for some token, compacted (ReLU: most
  // are 0): a ballot per warp over threads 0..63 (kMaxSlice = 64 = two whole warps).
  __shared__ unsigned masks[2];
  if (threadIdx.x < kMaxSlice) {
    const int jj = static_cast<int>(threadIdx.x);
    bool any = false;
    if (jj < len)
      for (int k = 0; k < nt; ++k) any |= hs[k][jj] != 0.0f;
    const unsigned mask = __ballot_sync(0xffffffffu, any);
    if ((threadIdx.x & 31u) == 0) masks[threadIdx.x / 32] = mask;
  }
  __syncthreads();
  if (threadIdx.x < kMaxSlice) {
    const unsigned w = threadIdx.x / 32, lane = threadIdx.x & 31u, mask = masks[w];
    if ((mask >> lane) & 1u)
      live[(w ? __popc(masks[0]) : 0) + __popc(mask & ((1u << lane) - 1u))] = static_cast<int>(threadIdx.x);
  }
  __syncthreads();
  const int n_live = __popc(masks[0]) + __popc(masks[1]);
  const int d = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (d >= dim) return;
  float acc[kDownTokens];
#pragma unroll
  for (int k = 0; k < kDownTokens; ++k) acc[k] = 0.0f;
  const std::uint8_t* base = bundles + down_offset;
  const int m = n_live;
  static_assert(kMaxSlice == 64 && kDownThreads >= kMaxSlice, "the compaction's two warps");
  int q = 0;
  for (; q + 4 <= m; q += 4) {  // four independent weight loads in flight
    float w[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) w[r] = element<K>(base + static_cast<std::size_t>(j0 + live[q + r]) * stride, d);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int jj = live[q + r];
#pragma unroll
      for (int k = 0; k < kDownTokens; ++k) acc[k] += hs[k][jj] * w[r];
    }
  }
  for (; q < m; ++q) {
    const int jj = live[q];
    const float w = element<K>(base + static_cast<std::size_t>(j0 + jj) * stride, d);
#pragma unroll
    for (int k = 0; k < kDownTokens; ++k) acc[k] += hs[k][jj] * w;
  }
  for (int k = 0; k < nt; ++k) partial[(static_cast<std::size_t>(s) * kDownTokens + k) * dim + d] = acc[k];
}

// out[t0 + k][d] = sum over slices of partial[s][k][d]: a block per (32 outputs, token), its
// kSumRows rows of threads each summing every kSumRows-th slice, then one row adds them up
// (a single thread walking all 256 slices was a 100 us chain of loads per layer).
constexpr int kSumRows = 16;
__global__ void slice_sum_kernel(const float* __restrict__ partial, int slices, int dim, int t0,
                                 float* __restrict__ out) {
  __shared__ float part[kSumRows][33];
  const int d = static_cast<int>(blockIdx.x * 32 + threadIdx.x), k = static_cast<int>(blockIdx.y);
  float s = 0.0f;
  if (d < dim)
    for (int sl = static_cast<int>(threadIdx.y); sl < slices; sl += kSumRows)
      s += partial[(static_cast<std::size_t>(sl) * kDownTokens + k) * dim + d];
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && d < dim) {
    float t = 0.0f;
#pragma unroll
    for (int r = 0; r < kSumRows; ++r) t += part[r][threadIdx.x];
    out[static_cast<std::size_t>(t0 + k) * dim + d] = t;
  }
}

int act_code(Activation a) {
  switch (a) {
    case Activation::swiglu: return 0;
    case Activation::reglu: return 1;
    case Activation::drelu: return 2;
  }
  return 2;
}

void launch_dequant(Kind k, const void* src, std::size_t n_rows, std::size_t n_cols, float* dst, cudaStream_t st) {
  const std::size_t total = n_rows * n_cols, rb = row_bytes_of(k, n_cols);
  const auto* s = static_cast<const std::uint8_t*>(src);
  const unsigned g = grid_for(total);
  switch (k) {
    case Kind::f32: dequant_kernel<Kind::f32><<<g, kThreads, 0, st>>>(s, rb, n_cols, total, dst); break;
    case Kind::f16: dequant_kernel<Kind::f16><<<g, kThreads, 0, st>>>(s, rb, n_cols, total, dst); break;
    case Kind::q8_0: dequant_kernel<Kind::q8_0><<<g, kThreads, 0, st>>>(s, rb, n_cols, total, dst); break;
    case Kind::q4_0: dequant_kernel<Kind::q4_0><<<g, kThreads, 0, st>>>(s, rb, n_cols, total, dst); break;
  }
  PWPI_CUDA_CHECK_LAUNCH("dequant_kernel");
}

// Page-locked host memory (fast, asynchronous copies).
struct PinnedFloats {
  float* p = nullptr;
  explicit PinnedFloats(std::size_t n) { PWPI_CUDA_CHECK(cudaMallocHost(reinterpret_cast<void**>(&p), std::max<std::size_t>(n, 1) * sizeof(float))); }
  ~PinnedFloats() {
    if (p) cudaFreeHost(p);
  }
  PinnedFloats(const PinnedFloats&) = delete;
  PinnedFloats& operator=(const PinnedFloats&) = delete;
};

void require_device() {
  const std::string missing = common::cuda::no_device_message();
  if (!missing.empty()) throw common::IoError("cuda device", "use the GPU", missing);
}

}  // namespace

bool supported_type(io::GgmlType type) {
  return type == io::GgmlType::F32 || type == io::GgmlType::F16 || type == io::GgmlType::Q8_0 ||
         type == io::GgmlType::Q4_0;
}

// ---- DeviceBytes

DeviceBytes::DeviceBytes(std::size_t bytes) : size_(bytes) {
  require_device();
  if (bytes == 0) return;
  const cudaError_t e = cudaMalloc(&ptr_, bytes);
  if (e != cudaSuccess) {
    cudaGetLastError();
    ptr_ = nullptr;
    throw common::IoError("cuda device", "allocate " + std::to_string(bytes >> 20) + " MiB of device memory",
                          cudaGetErrorString(e));
  }
}

DeviceBytes::~DeviceBytes() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBytes::DeviceBytes(DeviceBytes&& o) noexcept : ptr_(o.ptr_), size_(o.size_) {
  o.ptr_ = nullptr;
  o.size_ = 0;
}

DeviceBytes& DeviceBytes::operator=(DeviceBytes&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = o.ptr_;
    size_ = o.size_;
    o.ptr_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void DeviceBytes::upload(const void* src, std::size_t bytes, std::size_t offset) {
  PWPI_CHECK(offset + bytes <= size_);
  if (bytes == 0) return;
  PWPI_CUDA_CHECK(cudaMemcpy(static_cast<std::uint8_t*>(ptr_) + offset, src, bytes, cudaMemcpyHostToDevice));
}

std::size_t matrix_bytes(io::GgmlType type, std::size_t n_rows, std::size_t n_cols) {
  return n_rows * row_bytes_of(kind_of(type), n_cols);
}

DeviceMatrix upload_matrix(io::GgmlType type, const void* gguf_bytes, std::size_t n_rows, std::size_t n_cols) {
  DeviceMatrix m;
  m.type = type;
  m.n_rows = n_rows;
  m.n_cols = n_cols;
  const std::size_t bytes = matrix_bytes(type, n_rows, n_cols);
  m.bytes = DeviceBytes(bytes);
  m.bytes.upload(gguf_bytes, bytes);
  return m;
}

std::vector<float> dequantize_on_device(io::GgmlType type, const void* gguf_bytes, std::size_t n_rows,
                                        std::size_t n_cols) {
  const DeviceMatrix m = upload_matrix(type, gguf_bytes, n_rows, n_cols);
  DeviceBytes out(n_rows * n_cols * sizeof(float));
  launch_dequant(kind_of(type), m.bytes.get(), n_rows, n_cols, static_cast<float*>(out.get()), nullptr);
  std::vector<float> host(n_rows * n_cols);
  PWPI_CUDA_CHECK(cudaMemcpy(host.data(), out.get(), host.size() * sizeof(float), cudaMemcpyDeviceToHost));
  return host;
}

// ---- GemmRunner

struct GemmRunner::Impl {
  std::size_t max_tokens, max_cols, max_rows, max_elements;
  common::cuda::Stream stream;
  common::cuda::CublasHandle handle{stream.get()};
  DeviceBytes w32;      // [max_elements] a dequantized matrix
  DeviceBytes x;        // [max_tokens][max(max_cols, max_rows)]
  DeviceBytes y, u;     // [max_tokens][max_rows]

  Impl(std::size_t t, std::size_t c, std::size_t r, std::size_t e)
      : max_tokens(t),
        max_cols(c),
        max_rows(r),
        max_elements(e),
        w32(e * sizeof(float)),
        x(t * std::max(c, r) * sizeof(float)),
        y(t * r * sizeof(float)),
        u(t * r * sizeof(float)) {}

  // out[n][w.n_rows] = in[n][w.n_cols] W^T, device pointers, on the stream.
  void gemm(const DeviceMatrix& w, const float* in, std::size_t n, float* out) {
    PWPI_CHECK(w.n_rows <= max_rows && w.n_cols <= max_cols && w.n_rows * w.n_cols <= max_elements &&
               n <= max_tokens);
    float* wf = static_cast<float*>(w32.get());
    launch_dequant(kind_of(w.type), w.bytes.get(), w.n_rows, w.n_cols, wf, stream.get());
    // Column-major view: C (rows x n) = A^T (rows x cols) B (cols x n), A = W as (cols x rows).
    const float one = 1.0f, zero = 0.0f;
    const int rows = static_cast<int>(w.n_rows), cols = static_cast<int>(w.n_cols), nt = static_cast<int>(n);
    PWPI_CUBLAS_CHECK(common::cuda::cublas().gemm_ex(handle.get(), CUBLAS_OP_T, CUBLAS_OP_N, rows, nt, cols, &one, wf, CUDA_R_32F, cols, in,
                                   CUDA_R_32F, cols, &zero, out, CUDA_R_32F, rows, CUBLAS_COMPUTE_32F_FAST_TF32,
                                   CUBLAS_GEMM_DEFAULT));
  }
};

GemmRunner::GemmRunner(std::size_t max_tokens, std::size_t max_cols, std::size_t max_rows, std::size_t max_elements)
    : impl_(std::make_unique<Impl>(max_tokens, max_cols, max_rows, max_elements)) {}
GemmRunner::~GemmRunner() = default;

std::size_t GemmRunner::scratch_bytes(std::size_t max_tokens, std::size_t max_cols, std::size_t max_rows,
                                      std::size_t max_elements) {
  return sizeof(float) * (max_elements + max_tokens * std::max(max_cols, max_rows) + 2 * max_tokens * max_rows);
}

void GemmRunner::products(std::span<const DeviceMatrix* const> ws, std::span<float* const> ys, const float* x,
                          std::size_t n) {
  PWPI_CHECK(ws.size() == ys.size() && !ws.empty());
  Impl& m = *impl_;
  const std::size_t cols = ws[0]->n_cols;
  PWPI_CHECK(n <= m.max_tokens && cols <= m.max_cols);
  float* xd = static_cast<float*>(m.x.get());
  float* yd = static_cast<float*>(m.y.get());
  PWPI_CUDA_CHECK(cudaMemcpyAsync(xd, x, n * cols * sizeof(float), cudaMemcpyHostToDevice, m.stream.get()));
  for (std::size_t k = 0; k < ws.size(); ++k) {
    PWPI_CHECK(ws[k]->n_cols == cols);
    m.gemm(*ws[k], xd, n, yd);
    PWPI_CUDA_CHECK(cudaMemcpyAsync(ys[k], yd, n * ws[k]->n_rows * sizeof(float), cudaMemcpyDeviceToHost, m.stream.get()));
  }
  PWPI_CUDA_CHECK(cudaStreamSynchronize(m.stream.get()));
}

void GemmRunner::ffn(const DeviceMatrix& gate, const DeviceMatrix& up, const DeviceMatrix& down, Activation a,
                     const float* x, std::size_t n, float* out) {
  PWPI_CHECK(gate.n_rows == up.n_rows && gate.n_cols == up.n_cols && down.n_cols == gate.n_rows &&
             down.n_rows == gate.n_cols);
  float* xd = static_cast<float*>(impl_->x.get());
  float* g = static_cast<float*>(impl_->y.get());
  float* u = static_cast<float*>(impl_->u.get());
  to_device(xd, x, n * gate.n_cols);
  gemm(gate, xd, n, g);
  gemm(up, xd, n, u);
  activate(g, u, n * gate.n_rows, a);
  gemm(down, g, n, u);  // u is free again: the down product's output
  to_host(out, u, n * down.n_rows);
}

void GemmRunner::to_device(float* dst, const float* host, std::size_t count) {
  PWPI_CUDA_CHECK(cudaMemcpyAsync(dst, host, count * sizeof(float), cudaMemcpyHostToDevice, impl_->stream.get()));
}

void GemmRunner::to_host(float* host, const float* src, std::size_t count) {
  PWPI_CUDA_CHECK(cudaMemcpyAsync(host, src, count * sizeof(float), cudaMemcpyDeviceToHost, impl_->stream.get()));
  PWPI_CUDA_CHECK(cudaStreamSynchronize(impl_->stream.get()));
}

void GemmRunner::gemm(const DeviceMatrix& w, const float* in, std::size_t n, float* out) { impl_->gemm(w, in, n, out); }

void GemmRunner::rmsnorm(const float* x, const float* w, std::size_t n, std::size_t dim, float eps, float* out) {
  if (n == 0) return;
  rmsnorm_kernel<<<static_cast<unsigned>(n), kThreads, 0, impl_->stream.get()>>>(x, w, static_cast<int>(dim), eps, out);
  PWPI_CUDA_CHECK_LAUNCH("rmsnorm_kernel");
}

void GemmRunner::rope(float* x, std::size_t n, std::size_t row_stride, std::size_t n_head, std::size_t head_dim,
                      std::size_t half, const float* cos, const float* sin) {
  const std::size_t total = n * n_head * half;
  if (total == 0) return;
  rope_kernel<<<grid_for(total), kThreads, 0, impl_->stream.get()>>>(x, static_cast<int>(n), static_cast<int>(row_stride),
                                                                  static_cast<int>(n_head), static_cast<int>(head_dim),
                                                                  static_cast<int>(half), cos, sin);
  PWPI_CUDA_CHECK_LAUNCH("rope_kernel");
}

void GemmRunner::attention(const float* q, const float* k, const float* v, std::size_t n, std::size_t pos0,
                           std::size_t n_head, std::size_t n_kv_head, std::size_t head_dim, float* out) {
  PWPI_CHECK(head_dim <= 32 * kMaxDimsPerLane && n_kv_head > 0 && n_head % n_kv_head == 0);
  const std::size_t warps = n * n_head;
  if (warps == 0) return;
  const int q_stride = static_cast<int>(n_head * head_dim), kv_stride = static_cast<int>(n_kv_head * head_dim);
  const float scale = 1.0f / sqrtf(static_cast<float>(head_dim));
  attention_kernel<<<grid_for(warps * 32, 128), 128, 0, impl_->stream.get()>>>(
      q, k, v, static_cast<int>(n), static_cast<int>(pos0), static_cast<int>(n_head),
      static_cast<int>(n_head / n_kv_head), static_cast<int>(head_dim), q_stride, kv_stride, scale, out);
  PWPI_CUDA_CHECK_LAUNCH("attention_kernel");
}

void GemmRunner::add(float* x, const float* y, std::size_t count) {
  if (count == 0) return;
  add_kernel<<<grid_for(count), kThreads, 0, impl_->stream.get()>>>(x, y, count);
  PWPI_CUDA_CHECK_LAUNCH("add_kernel");
}

void GemmRunner::activate(float* g, const float* u, std::size_t count, Activation a) {
  if (count == 0) return;
  activate_kernel<<<grid_for(count), kThreads, 0, impl_->stream.get()>>>(g, u, count, act_code(a));
  PWPI_CUDA_CHECK_LAUNCH("activate_kernel");
}

// ---- NeuronFfn

namespace {

template <Kind K>
void run_neurons(const BundleLayout& L, const std::uint8_t* b, int count, const float* x, int n, int act, float* h,
                 float* partial, float* out, cudaStream_t st) {
  const int dim = static_cast<int>(L.dim);
  const std::size_t threads = static_cast<std::size_t>(count) * 32;
  neuron_h_kernel<K><<<grid_for(threads), kThreads, 0, st>>>(b, L.stride, L.up_offset, count, dim, x, n, act, h);
  PWPI_CUDA_CHECK_LAUNCH("neuron_h_kernel");
  const int slices = slices_for(count);
  const int slice = (count + slices - 1) / slices;
  PWPI_CHECK(slice <= kMaxSlice);
  const dim3 grid(static_cast<unsigned>((dim + kDownThreads - 1) / kDownThreads), static_cast<unsigned>(slices));
  for (int t0 = 0; t0 < n; t0 += kDownTokens) {
    const int nt = std::min(kDownTokens, n - t0);
    neuron_down_kernel<K><<<grid, kDownThreads, 0, st>>>(b, L.stride, L.down_offset, count, dim, h, t0, nt, slice,
                                                         partial);
    PWPI_CUDA_CHECK_LAUNCH("neuron_down_kernel");
    slice_sum_kernel<<<dim3(static_cast<unsigned>((dim + 31) / 32), static_cast<unsigned>(nt)), dim3(32, kSumRows), 0,
                       st>>>(partial, slices, dim, t0, out);
    PWPI_CUDA_CHECK_LAUNCH("slice_sum_kernel");
  }
}

}  // namespace

struct NeuronFfn::Impl {
  BundleLayout layout;
  Kind kind;
  int act;
  std::size_t max_tokens, max_neurons = 0;
  std::vector<std::size_t> counts;
  std::vector<DeviceBytes> bundles;  // [layer] counts[l] * stride bytes
  common::cuda::Stream stream;
  DeviceBytes x, h, partial, out;    // [max_tokens][dim], [max_tokens][max_neurons], [slices][8][dim], [max_tokens][dim]
  PinnedFloats x_host, out_host;
  std::size_t pending_n = 0, pending_count = 0;
  bool pending = false;
  // Decode (one token): each layer's copies and kernels captured once as a CUDA graph, then
  // replayed with one launch (the separate launches cost ~100 us per layer in a VM).
  std::vector<cudaGraphExec_t> graphs;  // [layer], nullptr until the first one-token launch

  ~Impl() {
    for (cudaGraphExec_t g : graphs)
      if (g) cudaGraphExecDestroy(g);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Queues the layer's work for n tokens on the stream: x_host -> device, kernels, -> out_host.
  void enqueue(std::size_t layer, std::size_t n) {
    const std::size_t dim = layout.dim;
    float* xd = static_cast<float*>(x.get());
    float* od = static_cast<float*>(out.get());
    PWPI_CUDA_CHECK(cudaMemcpyAsync(xd, x_host.p, n * dim * sizeof(float), cudaMemcpyHostToDevice, stream.get()));
    const auto* b = static_cast<const std::uint8_t*>(bundles[layer].get());
    float* hd = static_cast<float*>(h.get());
    float* pd = static_cast<float*>(partial.get());
    const int c = static_cast<int>(counts[layer]), nn = static_cast<int>(n);
    switch (kind) {
      case Kind::f32: run_neurons<Kind::f32>(layout, b, c, xd, nn, act, hd, pd, od, stream.get()); break;
      case Kind::f16: run_neurons<Kind::f16>(layout, b, c, xd, nn, act, hd, pd, od, stream.get()); break;
      case Kind::q8_0: run_neurons<Kind::q8_0>(layout, b, c, xd, nn, act, hd, pd, od, stream.get()); break;
      case Kind::q4_0: run_neurons<Kind::q4_0>(layout, b, c, xd, nn, act, hd, pd, od, stream.get()); break;
    }
    PWPI_CUDA_CHECK(cudaMemcpyAsync(out_host.p, od, n * dim * sizeof(float), cudaMemcpyDeviceToHost, stream.get()));
  }

  Impl(const BundleLayout& l, Activation a, std::span<const std::size_t> per_layer, std::size_t t)
      : layout(l),
        kind(kind_of(l.type)),
        act(act_code(a)),
        max_tokens(t),
        counts(per_layer.begin(), per_layer.end()),
        x_host(t * l.dim),
        out_host(t * l.dim) {
    for (const std::size_t c : counts) max_neurons = std::max(max_neurons, c);
    for (const std::size_t c : counts) bundles.emplace_back(c * l.stride);
    x = DeviceBytes(t * l.dim * sizeof(float));
    h = DeviceBytes(t * std::max<std::size_t>(max_neurons, 1) * sizeof(float));
    partial = DeviceBytes(static_cast<std::size_t>(slices_for(static_cast<int>(std::max<std::size_t>(max_neurons, 1)))) *
                          kDownTokens * l.dim * sizeof(float));
    out = DeviceBytes(t * l.dim * sizeof(float));
    graphs.assign(counts.size(), nullptr);
  }
};

std::size_t NeuronFfn::device_bytes(const BundleLayout& l, std::span<const std::size_t> per_layer,
                                    std::size_t max_tokens) {
  std::size_t total = 0, most = 1;
  for (const std::size_t c : per_layer) {
    total += c * l.stride;
    most = std::max(most, c);
  }
  return total + sizeof(float) * (2 * max_tokens * l.dim + max_tokens * most +
                                  static_cast<std::size_t>(slices_for(static_cast<int>(most))) * kDownTokens * l.dim);
}

NeuronFfn::NeuronFfn(const BundleLayout& layout, Activation a, std::span<const std::size_t> neurons_per_layer,
                     std::size_t max_tokens)
    : impl_(std::make_unique<Impl>(layout, a, neurons_per_layer, max_tokens)) {
  PWPI_CHECK(layout.dim % 32 == 0 && layout.dim > 0);
}

NeuronFfn::~NeuronFfn() {
  if (impl_ && impl_->pending) cudaStreamSynchronize(impl_->stream.get());
}

void NeuronFfn::upload(std::size_t layer, std::size_t first, const std::uint8_t* src, std::size_t count) {
  Impl& m = *impl_;
  PWPI_CHECK(layer < m.counts.size() && first + count <= m.counts[layer]);
  m.bundles[layer].upload(src, count * m.layout.stride, first * m.layout.stride);
}


void NeuronFfn::launch(std::size_t layer, const float* x, std::size_t n) {
  Impl& m = *impl_;
  PWPI_CHECK(!m.pending && layer < m.counts.size() && n >= 1 && n <= m.max_tokens);
  const std::size_t count = m.counts[layer];
  m.pending_n = n;
  m.pending_count = count;
  m.pending = true;
  if (count == 0) return;
  std::copy(x, x + n * m.layout.dim, m.x_host.p);
  if (n > 1) {
    m.enqueue(layer, n);
    return;
  }
  cudaGraphExec_t& exec = m.graphs[layer];
  if (exec == nullptr) {
    cudaGraph_t graph = nullptr;
    PWPI_CUDA_CHECK(cudaStreamBeginCapture(m.stream.get(), cudaStreamCaptureModeThreadLocal));
    try {
      m.enqueue(layer, 1);
    } catch (...) {
      cudaStreamEndCapture(m.stream.get(), &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    PWPI_CUDA_CHECK(cudaStreamEndCapture(m.stream.get(), &graph));
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess) {
      exec = nullptr;
      PWPI_CUDA_CHECK(e);
    }
  }
  PWPI_CUDA_CHECK(cudaGraphLaunch(exec, m.stream.get()));
}

void NeuronFfn::add_result(float* out) {
  Impl& m = *impl_;
  PWPI_CHECK(m.pending);
  m.pending = false;
  if (m.pending_count == 0) return;  // no neurons of that layer on the device
  PWPI_CUDA_CHECK(cudaStreamSynchronize(m.stream.get()));
  const std::size_t k = m.pending_n * m.layout.dim;
  for (std::size_t i = 0; i < k; ++i) out[i] += m.out_host.p[i];
}

}  // namespace powerinfer2::ops::cuda
