// Q8_0 / Q4_0 weights with rows interleaved by 16 (WeightLayout::rows16), the layout the
// AVX-512 kernels read fastest: for 16 rows and one 32-block, the bytes that one
// vpdpbusd step needs (4 consecutive elements of each of the 16 rows) are one 64-byte
// vector, and the 16 scales are one 32-byte vector. Same bytes per element as the GGUF
// layout (as llama.cpp's CPU backend repacks Q4_0 into Q4_0x8 at load time).
//
// Per group of 16 rows (rows past n_rows are zero) and per pair of blocks (a trailing odd
// block is paired with zeros):
//   Q4_0 (576 bytes): block 2p's 4 vectors, block 2p+1's 4 vectors, then the two blocks'
//     16 fp16 scales each. Vector j (64 bytes) holds qs[4j..4j+3] of each row (row l at
//     bytes 4l..4l+3): its low nibbles are elements 4j..4j+3, its high nibbles 16+4j..
//   Q8_0 (1088 bytes): the same with 8 vectors per block, vector j holding elements
//     4j..4j+3 of each row made unsigned (q + 128).
// A group's pairs follow each other; groups follow each other.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/aligned_buffer.hpp"
#include "common/thread_pool.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::ops {

inline constexpr std::size_t kRows16 = 16;

/// Bytes of one pair of blocks of one group of 16 rows.
constexpr std::size_t rows16_pair_bytes(io::GgmlType type) {
  return type == io::GgmlType::Q4_0 ? 2 * 4 * 64 + 2 * 32 : 2 * 8 * 64 + 2 * 32;
}

/// Bytes of a rows16 matrix of this type and shape (Q8_0 / Q4_0).
std::size_t rows16_bytes(io::GgmlType type, std::size_t n_rows, std::size_t n_cols);

/// Whether the products run faster on rows16 than on the GGUF layout in this build (true
/// with the AVX-512 kernels; other builds compute rows16 with scalar code).
bool rows16_pays();

/// Repacks a Q8_0 / Q4_0 matrix in the GGUF layout into `out` (rows16_bytes(), 64-byte
/// aligned), in parallel on `pool` when given.
void pack_rows16(const WeightMatrix& w, std::uint8_t* out, common::ThreadPool* pool = nullptr);

/// Row r of a rows16 matrix back in the GGUF layout (row_bytes() bytes; scalar, for tests
/// and references).
void unpack_rows16_row(const WeightMatrix& w, std::size_t r, std::uint8_t* out);

/// Owns a repacked copy of a matrix.
class PackedWeights {
 public:
  PackedWeights() = default;
  explicit PackedWeights(const WeightMatrix& w, common::ThreadPool* pool = nullptr);
  PackedWeights(const PackedWeights&) = delete;
  PackedWeights& operator=(const PackedWeights&) = delete;
  PackedWeights(PackedWeights&&) = default;
  PackedWeights& operator=(PackedWeights&&) = default;

  /// The repacked matrix (layout rows16), valid while this object lives.
  const WeightMatrix& view() const { return view_; }
  std::size_t size_bytes() const { return bytes_.size(); }

 private:
  common::AlignedBuffer<std::uint8_t> bytes_;
  WeightMatrix view_;
};

}  // namespace powerinfer2::ops
