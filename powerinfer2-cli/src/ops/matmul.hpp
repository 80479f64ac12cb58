// Matrix-vector and matrix-matrix products with a weight matrix stored as GGUF stores it:
// n_rows rows of n_cols elements (ne0 = n_cols), each row of a quantized type a run of
// 32-element blocks. Types F32, F16, Q8_0 and Q4_0; activations are F32 (quantized to
// Q8_0 inside for the quantized types). Multi-threaded over a common::ThreadPool: rows are
// split across threads in chunks. Nothing is allocated in a call: the caller passes a
// Workspace sized once for the largest product.
//
// matmul (prefill) packs a chunk of weight rows at a time into the thread's scratch
// (AVX-512 builds) so that each weight block is loaded once for a tile of tokens; other
// builds and small token counts compute row-by-token dot products.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "common/aligned_buffer.hpp"
#include "common/thread_pool.hpp"
#include "io/gguf_types.hpp"

namespace powerinfer2::ops {

/// How a matrix's bytes are arranged.
enum class WeightLayout : std::uint8_t {
  gguf,    // n_rows rows of n_cols elements, one after the other (row_bytes() each)
  rows16,  // Q8_0 / Q4_0 rows interleaved by 16 (ops/packed.hpp), for the AVX-512 kernels
};

/// A weight matrix in memory (a view; the bytes belong to the caller, e.g. a mapped file).
struct WeightMatrix {
  io::GgmlType type = io::GgmlType::F32;
  const void* data = nullptr;  // gguf: n_rows * row_bytes() bytes; rows16: packed_bytes()
  std::size_t n_rows = 0;      // ne[1]: outputs
  std::size_t n_cols = 0;      // ne[0]: inputs (a multiple of 32 for Q8_0 / Q4_0)
  WeightLayout layout = WeightLayout::gguf;

  /// Bytes of one row in the gguf layout.
  std::size_t row_bytes() const;
};

/// Whether matvec / matmul take this type (F32, F16, Q8_0, Q4_0).
bool is_supported_weight_type(io::GgmlType type);

/// Scratch for the products: quantized activations and per-thread packed weights. Sized
/// once; a product larger than the sizes given is a bug (PWPI_CHECK).
class Workspace {
 public:
  Workspace() = default;
  /// For products of up to `max_tokens` tokens, `max_cols` inputs, on pools of up to
  /// `max_threads` threads.
  Workspace(std::size_t max_tokens, std::size_t max_cols, std::size_t max_threads);
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) = default;
  Workspace& operator=(Workspace&&) = default;

  std::size_t max_tokens() const { return max_tokens_; }
  std::size_t max_cols() const { return max_cols_; }
  std::size_t max_threads() const { return max_threads_; }
  std::size_t size_bytes() const;

 private:
  friend struct WorkspaceAccess;
  std::size_t max_tokens_ = 0, max_cols_ = 0, max_threads_ = 0;
  std::size_t scratch_stride_ = 0;  // bytes per thread
  common::AlignedBuffer<std::int8_t> act_qs_;    // [max_tokens][max_cols]
  common::AlignedBuffer<float> act_d_;           // [max_tokens][max_cols / 32]
  common::AlignedBuffer<std::int32_t> act_sum_;  // [max_tokens][max_cols / 32]
  // Q8Act's spread form for the AVX-512 dot products, [min(max_tokens, 3)][max_cols / 64][16].
  common::AlignedBuffer<float> act_d16_;
  common::AlignedBuffer<std::int32_t> act_neg_sum16_;
  common::AlignedBuffer<std::uint8_t> scratch_;  // [max_threads][scratch_stride_]
};

/// y[n_rows] = W x[n_cols].
void matvec(const WeightMatrix& w, std::span<const float> x, std::span<float> y, common::ThreadPool& pool,
            Workspace& ws);

/// y[n_tok][n_rows] = x[n_tok][n_cols] W^T (row t of y is W times row t of x).
void matmul(const WeightMatrix& w, std::span<const float> x, std::size_t n_tok, std::span<float> y,
            common::ThreadPool& pool, Workspace& ws);

/// One product of products(): y[n_tok][w->n_rows] = x W^T.
struct Product {
  const WeightMatrix* w;
  std::span<float> y;
};

/// Several products of one input (q, k, v; gate, up), in one parallel region with the input
/// quantized once, when all matrices have the same type and n_cols (else one after another).
/// Each result is as matmul's.
void products(std::span<const Product> ps, std::span<const float> x, std::size_t n_tok, common::ThreadPool& pool,
              Workspace& ws);

namespace ref {
/// Single-threaded scalar products over the ref:: dot products (activations quantized by
/// ref::quantize_act_q8 for Q8_0 / Q4_0), allocating as they please.
void matvec(const WeightMatrix& w, std::span<const float> x, std::span<float> y);
void matmul(const WeightMatrix& w, std::span<const float> x, std::size_t n_tok, std::span<float> y);
}  // namespace ref

}  // namespace powerinfer2::ops
