// Writing the converted sparse model file (io/pi2_format.hpp): the FFN of a dense llama GGUF
// (or of a converted file being rewritten) as neuron bundles, with activation frequencies,
// neuron order and predictors. Offline: convert, profile-activations, train-predictor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/thread_pool.hpp"
#include "io/gguf_reader.hpp"
#include "model/config.hpp"
#include "model/pi2_model.hpp"
#include "ops/matmul.hpp"

namespace powerinfer2::prep {

/// A predictor to store (row-major floats, the layout of LinearPredictor in prep/predictor_fit.hpp).
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
void make_bundle(const model::BundleGeometry& g, const ops::WeightMatrix& gate, const ops::WeightMatrix& up,
                 const float* down_column, std::size_t i, std::uint8_t* out);

}  // namespace powerinfer2::prep
