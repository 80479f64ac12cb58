// A converted sparse model's FFN as the engine sees it (the .pi2.gguf container of
// io/pi2_format.hpp): per layer, views of the neuron bundles, activation frequencies, the
// permutation to the source model's neurons and the optional activation predictor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "io/gguf_reader.hpp"
#include "io/pi2_format.hpp"
#include "model/config.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::model {

/// Where a layer's bundles are and how big.
struct BundleGeometry {
  io::GgmlType type = io::GgmlType::F32;  // of the gate / up / down parts
  std::size_t dim = 0, ffn = 0, cluster_size = 1;
  std::size_t part_bytes = 0;  // one gate row, up row or down column
  std::size_t stride = 0;      // bytes per bundle (3 parts + padding)

  std::size_t n_clusters() const { return ffn / cluster_size; }
  std::size_t cluster_bytes() const { return stride * cluster_size; }
  std::size_t layer_bytes() const { return stride * ffn; }
  std::size_t up_offset() const { return part_bytes; }
  std::size_t down_offset() const { return 2 * part_bytes; }
};

/// The geometry for this type and shape; UsageError when cluster_size does not divide ffn or
/// the type is not F32 / F16 / Q8_0 / Q4_0.
BundleGeometry bundle_geometry(io::GgmlType type, std::size_t dim, std::size_t ffn, std::size_t cluster_size);

/// One layer's linear predictor (views into the file).
struct LayerPredictor {
  ops::WeightMatrix w1;                 // [rank rows, dim cols]
  ops::WeightMatrix gate;               // [ffn rows, rank cols]
  std::span<const float> gate_bias;     // [ffn]
  ops::WeightMatrix up;                 // dReLU only: [ffn, rank]
  std::span<const float> up_bias;       // dReLU only
  bool relu = false;                    // relu-mlp: h = relu(W1 x)
  std::size_t rank() const { return w1.n_rows; }
};

struct Pi2Layer {
  std::uint64_t bundles_offset = 0;           // file offset of blk.N.ffn_bundles (4 KiB aligned)
  std::span<const std::uint8_t> bundles;      // the same bytes in the mapping (offline tools, oracle)
  std::span<const float> freq;                // [ffn]
  std::span<const std::int32_t> perm;         // [ffn]
  std::optional<LayerPredictor> predictor;
};

struct Pi2Model {
  BundleGeometry geo;
  std::vector<Pi2Layer> layers;
  std::uint64_t profiled_tokens = 0;
  bool has_predictor() const { return !layers.empty() && layers.front().predictor.has_value(); }
  std::uint64_t ffn_bytes() const { return static_cast<std::uint64_t>(geo.layer_bytes()) * layers.size(); }
};

/// Parses and checks the pi2 part of an open file (InputError naming the file and the tensor
/// or key for anything inconsistent with the config).
Pi2Model load_pi2(const io::GgufFile& file, const ModelConfig& c);

/// Dequantizes part `p` of a bundle (0 gate, 1 up, 2 down) to floats [dim] (the oracle, tests, tools).
void bundle_part_to_f32(const BundleGeometry& g, const std::uint8_t* bundle, int p, float* out);

}  // namespace powerinfer2::model
