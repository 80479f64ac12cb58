// A loaded model: the open GGUF file (weights are views into its mapping, or into `packed`),
// its config, weight views and tokenizer. Non-copyable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "common/thread_pool.hpp"
#include "io/gguf_reader.hpp"
#include "model/config.hpp"
#include "model/pi2_model.hpp"
#include "model/tokenizer.hpp"
#include "model/weights.hpp"
#include "ops/packed.hpp"

namespace powerinfer2::model {

/// Anonymous memory for repacked weights and neuron clusters, mapped (not yet touched) from a
/// 2 MiB boundary so that transparent huge pages can back it; move-only. It ends on the page
/// after `bytes`, not on a huge page: what it holds resident is what was asked for.
class WeightStore {
 public:
  WeightStore() = default;
  explicit WeightStore(std::size_t bytes);  // std::bad_alloc when the OS refuses
  ~WeightStore();
  WeightStore(const WeightStore&) = delete;
  WeightStore& operator=(const WeightStore&) = delete;
  WeightStore(WeightStore&& o) noexcept;
  WeightStore& operator=(WeightStore&& o) noexcept;

  std::uint8_t* data() { return data_; }
  std::size_t size_bytes() const { return size_; }

 private:
  std::uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

struct Model {
  /// Opens and validates `path` (IoError / InputError as GgufFile, load_config, load_weights).
  /// With `repack` (default: when this build's kernels read rows16 faster), the Q8_0 / Q4_0
  /// matrices of the layers and the output head are repacked once to the rows16 layout
  /// (ops/packed.hpp) in `packed`, on `pool` when given, and their pages of the file mapping
  /// are dropped as each is done, so the weights are held once, not twice.
  explicit Model(const std::string& path, common::ThreadPool* pool = nullptr, bool repack = ops::rows16_pays());
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  io::GgufFile file;
  model::ModelConfig config;
  model::ModelWeights weights;
  model::Tokenizer tokenizer;
  WeightStore packed;  // the rows16 matrices, one after the other, each 64-byte aligned
  std::uint64_t repacked_file_bytes = 0;  // the file bytes of the matrices now in `packed`
  /// Set for a converted sparse model (.pi2.gguf): the FFN is in bundles, `weights` holds no
  /// FFN matrices, and only the sparse engine (sparse/sparse_ffn.hpp) can run it.
  std::optional<Pi2Model> pi2;

  /// Bytes of weights the model holds resident once running: every tensor of the file but a
  /// converted model's neuron bundles (read from storage, not through the mapping), the
  /// repacked matrices counted as `packed` holds them.
  std::uint64_t resident_weight_bytes() const;
};

}  // namespace powerinfer2::model
