// Offline preparation of a converted model from a run of the dense engine over text:
// per-neuron activation frequencies (the basis of hot/cold placement) and the training
// samples and fitting of the per-layer activation predictors.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/thread_pool.hpp"
#include "model/model.hpp"
#include "prep/pi2_writer.hpp"
#include "prep/predictor_fit.hpp"

namespace powerinfer2::prep {

struct ActivationRecord {
  std::uint64_t tokens = 0;
  std::vector<std::vector<std::uint64_t>> fired;  // [layer][neuron]: tokens that activated it
  std::vector<std::vector<float>> inputs;         // [layer][n_kept][dim]: FFN inputs (when kept)
  std::size_t n_kept = 0;
};

/// Runs the dense engine of `dense` (a GGUF with FFN matrices) over `tokens` in windows of
/// `window` tokens (each from position 0) and counts, per neuron, the tokens it fired on;
/// keeps the FFN inputs of up to `keep_inputs` tokens (evenly spread).
ActivationRecord record_activations(const model::Model& dense, common::ThreadPool& pool,
                                    std::span<const model::TokenId> tokens, std::size_t window,
                                    std::size_t keep_inputs);

/// Neurons by descending frequency (ties: lower index first): the order profiling stores.
std::vector<std::int32_t> hotness_order(std::span<const std::uint64_t> fired);

struct LayerFitReport {
  std::size_t rank = 0;
  double recall = 0, precision = 0, predicted_fraction = 0, true_fraction = 0;
};

/// Fits one predictor per layer on the kept inputs (gate and up pre-activations recomputed
/// from the dense matrices), rows ordered as `perm` (perm[p] = dense neuron of position p),
/// with the joint held-out recall target `o.target_recall`.
std::vector<PredictorTensors> train_predictors(const model::Model& dense, common::ThreadPool& pool,
                                               const ActivationRecord& rec,
                                               const std::vector<std::vector<std::int32_t>>& perm,
                                               const PredictorFitOptions& o, std::vector<LayerFitReport>& reports);

}  // namespace powerinfer2::prep
