// Fitting the low-rank linear activation predictor of one FFN layer (pure math: no I/O, no
// engine). A neuron fires when its pre-activation (gate for ReGLU; gate and up for dReLU)
// is positive; the predictor guesses that from the FFN input x before the FFN runs:
//
//   score = W2 (W1 x) + bias,   neuron predicted active iff score > 0
//
// W1 [rank][dim] holds the top principal directions of the recorded inputs (the FFN inputs
// of ReLU LLMs lie close to a low-rank subspace), W2 and the intercept are a ridge least-
// squares fit of the pre-activations on W1 x, and the bias is shifted up by a safety margin
// (in units of each neuron's residual std) calibrated on held-out samples until the recall
// target is met. One evaluation costs rank * (dim + n_out) multiply-adds.
#pragma once

#include <cstddef>
#include <span>
#include <utility>
#include <vector>

namespace powerinfer2::prep {

struct PredictorFitOptions {
  double target_recall = 0.99;  // on the held-out split, over all samples and neurons
  std::size_t max_rank = 0;     // 0: max(8, dim / 16)
  double energy = 0.9999;       // rank: fewest directions holding this share of sum |x|^2
  double holdout = 0.25;        // share of samples held out to calibrate the margin
  double ridge = 1e-3;          // ridge penalty, relative to the mean kept eigenvalue
  // Second-moment matrices (min(n_train, dim) square) up to this size are decomposed
  // exactly; larger ones by randomized subspace iteration for the top max_rank directions.
  std::size_t exact_eigen_max = 512;
};

/// score = W2 (W1 x) + bias; a neuron is predicted active iff its score > 0.
/// rank 0 (inputs without energy): the scores are the bias, +1: everything predicted active.
struct LinearPredictor {
  std::size_t dim = 0, rank = 0, n_out = 0;
  std::vector<float> w1;    // [rank][dim], row c an orthonormal basis vector
  std::vector<float> w2;    // [n_out][rank]
  std::vector<float> bias;  // [n_out], the margin baked in
};

/// Measured on the held-out split with the final (float) predictor. recall is 1 when no
/// neuron fired; precision is 1 when none was predicted.
struct PredictorFitReport {
  std::size_t rank = 0;
  double recall = 0, precision = 0;
  double predicted_fraction = 0, true_fraction = 0;  // of samples x neurons
  double margin = 0;                                 // in residual stds
  std::size_t n_train = 0, n_holdout = 0;
};

/// Whether sample i belongs to the held-out split (every 1/holdout-th sample).
bool is_holdout(std::size_t i, double holdout);

/// xs: [n][dim] FFN inputs; targets: [n][n_out] pre-activations (a neuron fires iff > 0).
/// Sample i is held out iff floor((i + 1) * holdout) > floor(i * holdout) (every 4th for
/// 0.25). W1: top principal directions of the training inputs (uncentred second moment,
/// through the n x n Gram matrix when n < dim), rank = the fewest reaching `energy`, capped
/// by max_rank; W2 and bias0: ridge least squares with an unpenalised intercept; then
/// bias = bias0 + m * sigma_i (sigma_i: neuron i's residual std on the training split,
/// floored at 1% of the mean) with the smallest m >= 0 whose held-out recall >= target.
/// Throws common::InputError when fewer than 2 training or 1 held-out samples remain
/// (n < 4 at the default holdout) or a value is not finite; malformed arguments (sizes,
/// option ranges) are bugs (PWPI_CHECK). All-zero inputs give a rank-0 predictor that
/// predicts every neuron active.
std::pair<LinearPredictor, PredictorFitReport> fit_linear_predictor(
    std::span<const float> xs, std::span<const float> targets, std::size_t n, std::size_t dim,
    std::size_t n_out, const PredictorFitOptions& options);

/// out[n_out] = the scores for one input x[dim] (a reference; the runtime has its own kernel).
void predictor_scores(const LinearPredictor& p, std::span<const float> x, std::span<float> out);

struct SetQuality {
  double recall = 0, precision = 0;                  // 1 when nothing fired / was predicted
  double predicted_fraction = 0, true_fraction = 0;  // of samples x neurons
};

/// Quality of the predicted active sets on n samples: with u (dReLU) a neuron is predicted
/// active iff both g and u predict it and fires iff g_targets > 0 and u_targets > 0; with
/// u == nullptr (ReGLU) g alone, and u_targets is ignored (may be empty).
/// xs: [n][dim]; g_targets, u_targets: [n][n_out].
SetQuality measure_and(const LinearPredictor& g, const LinearPredictor* u, std::span<const float> xs,
                       std::span<const float> g_targets, std::span<const float> u_targets, std::size_t n);

}  // namespace powerinfer2::prep
