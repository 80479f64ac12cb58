// The converted sparse model file (".pi2.gguf"): a GGUF v3 container (magic "GGUF", so
// standard readers list it) whose FFN weights are stored per neuron, for the sparse engine.
// This header names the container's parts; model/pi2_model.hpp reads them into views,
// prep/pi2_writer.hpp writes them.
//
// Layout:
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
#include <string>
#include <string_view>

#include "io/gguf_reader.hpp"

namespace powerinfer2::io {

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
/// Prefix of every pi2 key (a rewrite drops the source's and writes its own).
inline constexpr std::string_view kPi2KeyPrefix = "powerinfer2.pi2.";
inline constexpr std::size_t kClusterAlign = 4096;

/// "blk.<layer>.<suffix>": the name of a layer's tensor ("ffn_bundles", "pred_w1", ...).
std::string pi2_layer_tensor(std::size_t layer, std::string_view suffix);

/// Whether `name` is a layer's FFN tensor in either form (dense matrices, bundles and their
/// side tensors, predictors): what a converted file replaces.
bool is_pi2_ffn_tensor(std::string_view name);

/// Whether `name` is a layer's bundle tensor (blk.N.ffn_bundles): the bytes read from storage.
bool is_pi2_bundle_tensor(std::string_view name);

/// Whether the file is a converted sparse model (has powerinfer2.pi2.version).
bool is_pi2(const GgufFile& file);

}  // namespace powerinfer2::io
