// The converted sparse model file (".pi2.gguf"): a GGUF v3 container (magic "GGUF", so
// standard readers list it) whose FFN weights are stored per neuron, for the sparse engine.
//
// Layout (docs/formats.md, "The .pi2.gguf sparse model"):
//   - every metadata key and every non-FFN tensor of the source model, unchanged;
//   - general.alignment = 4096: every tensor's data starts on a 4 KiB boundary;
//   - per layer N:
//       blk.N.ffn_bundles  I8 {stride, ffn}: row i is neuron i's bundle: gate row i, up row i
//                          and down column i (each `dim` elements of the bundle type, quantized
//                          types keep their 32-blocks; the down column is re-quantized along
//                          dim), zero padding up to `stride` bytes. cluster_size consecutive
//                          bundles form a cluster of stride * cluster_size bytes, a multiple of
//                          4096, so every cluster is one O_DIRECT read.
//       blk.N.ffn_freq     F32 {ffn}: the fraction of profiled tokens that activated neuron i
//       blk.N.ffn_perm     I32 {ffn}: the source model's index of neuron i (profiling sorts the
//                          neurons of each layer by frequency, hottest first)
//       blk.N.pred_w1      Q8_0|F16 {dim, rank} predictor (optional, train-predictor): per
//       blk.N.pred_gate    Q8_0|F16 {rank, ffn} neuron score s = W2 (W1 x) + b, predicted
//       blk.N.pred_gate_b  F32 {ffn}            active when s > 0; dReLU models add the up
//       blk.N.pred_up      Q8_0|F16 {rank, ffn} predictor and need both (Q8_0 when rank % 32 == 0)
//       blk.N.pred_up_b    F32 {ffn}
//   - keys powerinfer2.pi2.* below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/thread_pool.hpp"
#include "io/gguf_reader.hpp"
#include "model/config.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::sparse {

inline constexpr std::string_view kPi2VersionKey = "powerinfer2.pi2.version";           // u32, 1
inline constexpr std::string_view kPi2ClusterSizeKey = "powerinfer2.pi2.cluster_size";  // u32 neurons
inline constexpr std::string_view kPi2BundleTypeKey = "powerinfer2.pi2.bundle_type";    // u32 ggml type
inline constexpr std::string_view kPi2StrideKey = "powerinfer2.pi2.bundle_stride";      // u32 bytes
inline constexpr std::string_view kPi2ProfiledTokensKey = "powerinfer2.pi2.profiled_tokens";  // u64
inline constexpr std::string_view kPi2PredictorRecallKey = "powerinfer2.pi2.predictor_recall";  // f32 (held out)
inline constexpr std::string_view kPi2PredictorPrecisionKey = "powerinfer2.pi2.predictor_precision";
/// "linear" (train-predictor: s = W2 (W1 x) + b) or "relu-mlp" (PowerInfer's fc1/fc2 taken
/// over by convert: s = W2 relu(W1 x) + b, one score per neuron, no separate up predictor).
inline constexpr std::string_view kPi2PredictorKindKey = "powerinfer2.pi2.predictor_kind";
inline constexpr std::size_t kClusterAlign = 4096;

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

/// Whether the file is a converted sparse model (has powerinfer2.pi2.version).
bool is_pi2(const io::GgufFile& file);

/// Parses and checks the pi2 part of an open file (InputError naming the file and the tensor
/// or key for anything inconsistent with the config).
Pi2Model load_pi2(const io::GgufFile& file, const model::ModelConfig& c);

/// A predictor to store (row-major floats, the layout of LinearPredictor in predictor_fit.hpp).
struct PredictorTensors {
  std::size_t rank = 0;
  std::vector<float> w1;         // [rank][dim]
  std::vector<float> gate_w2;    // [ffn][rank]
  std::vector<float> gate_bias;  // [ffn]
  std::vector<float> up_w2;      // dReLU: [ffn][rank]
  std::vector<float> up_bias;
  bool relu = false;             // PowerInfer's MLP (no up predictor)
};

/// What write_pi2 writes besides the source's tensors.
struct Pi2WriteSpec {
  std::size_t cluster_size = 0;  // 0: the source's (a pi2 source) or 32
  /// Per layer, the source neuron (index into the source's order) of each output position;
  /// empty: unchanged order.
  std::vector<std::vector<std::int32_t>> order;
  /// Per layer, activation frequency in the SOURCE order; empty: the source's, else zeros.
  std::vector<std::vector<float>> freq;
  std::optional<std::uint64_t> profiled_tokens;
  /// Per layer predictors in OUTPUT order; empty: the source's (rows permuted with `order`).
  std::vector<PredictorTensors> predictors;
  float predictor_recall = -1.0f, predictor_precision = -1.0f;  // stored when >= 0
};

/// Writes `out_path` (temporary + rename) from a dense llama GGUF or a pi2 file. The FFN of
/// a dense source becomes bundles (down columns re-quantized to the matrix's type along dim).
/// UsageError / InputError for an unsupported source (mixed FFN types, a SwiGLU model: it is
/// never sparse).
void write_pi2(const io::GgufFile& source, const model::ModelConfig& c, const Pi2WriteSpec& spec,
               const std::string& out_path, common::ThreadPool* pool = nullptr);

/// The bundle of neuron `i` of a dense layer, into out[stride] (for write_pi2 and tests).
void make_bundle(const BundleGeometry& g, const ops::WeightMatrix& gate, const ops::WeightMatrix& up,
                 const float* down_column, std::size_t i, std::uint8_t* out);

/// Dequantizes part `p` of a bundle (0 gate, 1 up, 2 down) to floats [dim] (tests, tools).
void bundle_part_to_f32(const BundleGeometry& g, const std::uint8_t* bundle, int p, float* out);

}  // namespace powerinfer2::sparse
