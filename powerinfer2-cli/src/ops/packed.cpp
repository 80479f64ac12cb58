#include "ops/packed.hpp"

#include <cstring>

#include "common/errors.hpp"
#include "ops/quants.hpp"
#include "ops/simd.hpp"

namespace powerinfer2::ops {

using io::GgmlType;

std::size_t rows16_bytes(GgmlType type, std::size_t n_rows, std::size_t n_cols) {
  PWPI_CHECK(type == GgmlType::Q8_0 || type == GgmlType::Q4_0);
  const std::size_t n_groups = (n_rows + kRows16 - 1) / kRows16;
  const std::size_t n_pairs = (n_cols / kQK + 1) / 2;
  return n_groups * n_pairs * rows16_pair_bytes(type);
}

bool rows16_pays() {
#if defined(PWPI_OPS_AVX512)
  return true;
#else
  return false;
#endif
}

void pack_rows16(const WeightMatrix& w, std::uint8_t* out, common::ThreadPool* pool) {
  PWPI_CHECK(w.layout == WeightLayout::gguf && (w.type == GgmlType::Q8_0 || w.type == GgmlType::Q4_0));
  PWPI_CHECK(w.n_cols % kQK == 0);
  const bool q4 = w.type == GgmlType::Q4_0;
  const std::size_t nb = w.n_cols / kQK, n_pairs = (nb + 1) / 2;
  const std::size_t n_vec = q4 ? 4 : 8;  // 64-byte vectors per block
  const std::size_t pair_bytes = rows16_pair_bytes(w.type);
  const std::size_t n_groups = (w.n_rows + kRows16 - 1) / kRows16;
  const std::size_t row_bytes = w.row_bytes();
  auto groups = [&](std::size_t g0, std::size_t g1) {
    for (std::size_t g = g0; g < g1; ++g) {
      std::uint8_t* group = out + g * n_pairs * pair_bytes;
      std::memset(group, 0, n_pairs * pair_bytes);
      for (std::size_t l = 0; l < kRows16 && g * kRows16 + l < w.n_rows; ++l) {
        const std::uint8_t* row = static_cast<const std::uint8_t*>(w.data) + (g * kRows16 + l) * row_bytes;
        for (std::size_t b = 0; b < nb; ++b) {
          std::uint8_t* pair = group + (b / 2) * pair_bytes;
          std::uint8_t* vecs = pair + (b % 2) * n_vec * 64;
          std::uint8_t* scales = pair + 2 * n_vec * 64 + (b % 2) * 32;
          const std::uint8_t* blk = row + b * (q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0));
          std::memcpy(scales + 2 * l, blk, 2);  // fp16 d
          for (std::size_t j = 0; j < n_vec; ++j) {
            std::uint8_t* dst = vecs + 64 * j + 4 * l;
            std::memcpy(dst, blk + 2 + 4 * j, 4);
            if (!q4)
              for (std::size_t k = 0; k < 4; ++k) dst[k] ^= 0x80;  // q + 128
          }
        }
      }
    }
  };
  if (pool != nullptr)
    pool->parallel_for(0, n_groups, 16, groups);
  else
    groups(0, n_groups);
}

void unpack_rows16_row(const WeightMatrix& w, std::size_t r, std::uint8_t* out) {
  PWPI_CHECK(w.layout == WeightLayout::rows16 && r < w.n_rows);
  const bool q4 = w.type == GgmlType::Q4_0;
  const std::size_t nb = w.n_cols / kQK, n_vec = q4 ? 4 : 8, pair_bytes = rows16_pair_bytes(w.type);
  const std::uint8_t* group = static_cast<const std::uint8_t*>(w.data) + (r / kRows16) * (nb + 1) / 2 * pair_bytes;
  const std::size_t l = r % kRows16;
  for (std::size_t b = 0; b < nb; ++b) {
    const std::uint8_t* pair = group + (b / 2) * pair_bytes;
    std::uint8_t* blk = out + b * (q4 ? sizeof(BlockQ4_0) : sizeof(BlockQ8_0));
    std::memcpy(blk, pair + 2 * n_vec * 64 + (b % 2) * 32 + 2 * l, 2);
    for (std::size_t j = 0; j < n_vec; ++j) {
      std::memcpy(blk + 2 + 4 * j, pair + (b % 2) * n_vec * 64 + 64 * j + 4 * l, 4);
      if (!q4)
        for (std::size_t k = 0; k < 4; ++k) blk[2 + 4 * j + k] ^= 0x80;
    }
  }
}

PackedWeights::PackedWeights(const WeightMatrix& w, common::ThreadPool* pool)
    : bytes_(rows16_bytes(w.type, w.n_rows, w.n_cols)) {
  pack_rows16(w, bytes_.data(), pool);
  view_ = WeightMatrix{w.type, bytes_.data(), w.n_rows, w.n_cols, WeightLayout::rows16};
}

}  // namespace powerinfer2::ops
