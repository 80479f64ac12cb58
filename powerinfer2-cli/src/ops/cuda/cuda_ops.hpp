// GPU kernels of the inference engine (CUDA), behind a plain C++ interface: no CUDA header
// leaks out, and a build without CUDA links cuda_ops_none.cpp, whose constructors throw.
//
//   - DeviceMatrix / GemmRunner: weight matrices resident on the device in their GGUF bytes
//     (F32, F16, Q8_0, Q4_0); a product dequantizes the matrix to F32 in a scratch buffer and
//     multiplies with cuBLAS on the TF32 tensor cores (F32 range: activations cannot overflow as
//     F16 ones can; ~1e-3 relative error, the order of the CPU path's Q8_0 activations). The
//     prompt (prefill) path: many tokens per weight byte.
//   - NeuronFfn: the hot-neuron segment of a sparse model (.pi2.gguf bundles, io/pi2_format.hpp)
//     resident on the device; per layer it computes its neurons' share of the FFN for n tokens,
//     asynchronously, while the CPU computes the rest. F32 arithmetic on the dequantized weights.
//
// Every kernel has a CPU reference in the tests (tests/powerinfer2/test_cuda.cpp, label cuda).
// Errors (no device, out of device memory, a failed call) throw common::IoError.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "io/gguf_types.hpp"
#include "ops/activation.hpp"

namespace powerinfer2::ops::cuda {

/// Whether the device kernels take this weight type (F32, F16, Q8_0, Q4_0).
bool supported_type(io::GgmlType type);

/// Bytes of device memory; move-only.
class DeviceBytes {
 public:
  DeviceBytes() = default;
  explicit DeviceBytes(std::size_t bytes);
  ~DeviceBytes();
  DeviceBytes(DeviceBytes&& o) noexcept;
  DeviceBytes& operator=(DeviceBytes&& o) noexcept;
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  void* get() const { return ptr_; }
  std::size_t size() const { return size_; }
  /// Synchronous copy of `bytes` bytes from host memory to offset `offset`.
  void upload(const void* src, std::size_t bytes, std::size_t offset = 0);

 private:
  void* ptr_ = nullptr;
  std::size_t size_ = 0;
};

/// A weight matrix on the device in the GGUF layout: n_rows rows of n_cols elements.
struct DeviceMatrix {
  io::GgmlType type = io::GgmlType::F32;
  std::size_t n_rows = 0, n_cols = 0;
  DeviceBytes bytes;
};

/// Copies a matrix in the GGUF layout (n_rows * row_bytes bytes) to the device.
DeviceMatrix upload_matrix(io::GgmlType type, const void* gguf_bytes, std::size_t n_rows, std::size_t n_cols);

/// Device bytes upload_matrix takes for such a matrix.
std::size_t matrix_bytes(io::GgmlType type, std::size_t n_rows, std::size_t n_cols);

/// Dense products on the device (one stream, one cuBLAS handle). Synchronous: host in, host out.
class GemmRunner {
 public:
  /// For products of up to max_tokens tokens, max_cols inputs and max_rows outputs, with
  /// matrices of up to max_elements weights.
  GemmRunner(std::size_t max_tokens, std::size_t max_cols, std::size_t max_rows, std::size_t max_elements);
  ~GemmRunner();
  GemmRunner(const GemmRunner&) = delete;
  GemmRunner& operator=(const GemmRunner&) = delete;

  /// Device bytes a runner of these sizes allocates (scratch, activations).
  static std::size_t scratch_bytes(std::size_t max_tokens, std::size_t max_cols, std::size_t max_rows,
                                   std::size_t max_elements);

  /// ys[k][n][ws[k]->n_rows] = x[n][cols] W_k^T for every k; all W_k have n_cols == cols.
  void products(std::span<const DeviceMatrix* const> ws, std::span<float* const> ys, const float* x, std::size_t n);

  /// out[n][down.n_rows] = act(x gate^T, x up^T) down^T: a whole FFN, x uploaded once.
  void ffn(const DeviceMatrix& gate, const DeviceMatrix& up, const DeviceMatrix& down, Activation a, const float* x,
           std::size_t n, float* out);

  // ---- The pieces of a whole layer on the device, queued in order on the runner's stream.
  // Pointers are device memory (DeviceBytes) unless named `host`; a copy to the host waits.
  void to_device(float* dst, const float* host, std::size_t count);
  void to_host(float* host, const float* src, std::size_t count);
  /// out[n][w.n_rows] = in[n][w.n_cols] W^T.
  void gemm(const DeviceMatrix& w, const float* in, std::size_t n, float* out);
  /// out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * w for n rows of dim (sums in double, as the CPU).
  void rmsnorm(const float* x, const float* w, std::size_t n, std::size_t dim, float eps, float* out);
  /// llama.cpp's normal RoPE in place on n rows (row_stride floats apart) of n_head heads:
  /// pairs (2i, 2i+1), i < half, rotated by cos/sin[t][i] ([n][half]).
  void rope(float* x, std::size_t n, std::size_t row_stride, std::size_t n_head, std::size_t head_dim,
            std::size_t half, const float* cos, const float* sin);
  /// Causal attention of n queries at positions pos0.. (q [n][n_head * head_dim]) over the cache
  /// rows [0, pos0 + i] of k and v ([pos][n_kv_head * head_dim]); query head h reads kv head
  /// h / (n_head / n_kv_head). out [n][n_head * head_dim]. head_dim <= 128.
  void attention(const float* q, const float* k, const float* v, std::size_t n, std::size_t pos0, std::size_t n_head,
                 std::size_t n_kv_head, std::size_t head_dim, float* out);
  /// x[i] += y[i].
  void add(float* x, const float* y, std::size_t count);
  /// g[i] = act(g[i], u[i]).
  void activate(float* g, const float* u, std::size_t count, Activation a);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Where the three parts of a neuron bundle lie (model/pi2_model.hpp's BundleGeometry).
struct BundleLayout {
  io::GgmlType type = io::GgmlType::F32;
  std::size_t dim = 0;          // elements of each part
  std::size_t stride = 0;       // bytes per bundle
  std::size_t up_offset = 0;    // bytes from the bundle's start
  std::size_t down_offset = 0;
};

/// A share of each layer's FFN neurons resident on the device, computed there.
class NeuronFfn {
 public:
  /// Room for neurons_per_layer[l] bundles of layer l; inputs of up to max_tokens tokens.
  NeuronFfn(const BundleLayout& layout, Activation a, std::span<const std::size_t> neurons_per_layer,
            std::size_t max_tokens);
  ~NeuronFfn();
  NeuronFfn(const NeuronFfn&) = delete;
  NeuronFfn& operator=(const NeuronFfn&) = delete;

  /// Device bytes for these sizes (bundles and run buffers).
  static std::size_t device_bytes(const BundleLayout& layout, std::span<const std::size_t> neurons_per_layer,
                                   std::size_t max_tokens);

  /// Copies `count` bundles (count * stride bytes) to positions [first, first + count) of the
  /// layer's segment (synchronous).
  void upload(std::size_t layer, std::size_t first, const std::uint8_t* bundles, std::size_t count);

  /// Starts the FFN of the layer's resident neurons on x[n][dim] (host memory; copied before
  /// returning), without waiting for it.
  void launch(std::size_t layer, const float* x, std::size_t n);
  /// Waits for the last launch and adds its result to out[n][dim] (host memory).
  void add_result(float* out);


 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Test hook: the matrix dequantized on the device by the kernel the products use, read back
/// ([n_rows][n_cols] floats).
std::vector<float> dequantize_on_device(io::GgmlType type, const void* gguf_bytes, std::size_t n_rows,
                                        std::size_t n_cols);

}  // namespace powerinfer2::ops::cuda
