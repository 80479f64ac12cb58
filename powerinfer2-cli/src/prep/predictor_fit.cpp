#include "prep/predictor_fit.hpp"

// GCC 12 reports false (maybe-)uninitialized warnings inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "common/errors.hpp"

namespace powerinfer2::prep {

namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ColMatF = Eigen::MatrixXf;
using MatD = Eigen::MatrixXd;
using ConstMapF = Eigen::Map<const MatF>;

common::Where fit_where() {
  common::Where w;
  w.item = "predictor fit";
  return w;
}

void check_finite(std::span<const float> values, std::size_t row_len, const char* what) {
  const Eigen::Map<const Eigen::ArrayXf> all(values.data(), static_cast<Eigen::Index>(values.size()));
  if (all.allFinite()) return;  // vectorised; the loop below only finds the culprit
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isfinite(values[i]))
      throw common::InputError(fit_where(), std::string("finite ") + what,
                               std::to_string(values[i]) + " in sample " + std::to_string(i / row_len));
}

// Counts of predicted / fired entries over a block of scores and targets.
struct Counts {
  std::size_t hit = 0, predicted = 0, fired = 0, total = 0;

  SetQuality quality() const {
    SetQuality q;
    q.recall = fired == 0 ? 1.0 : static_cast<double>(hit) / static_cast<double>(fired);
    q.precision = predicted == 0 ? 1.0 : static_cast<double>(hit) / static_cast<double>(predicted);
    q.predicted_fraction = total == 0 ? 0.0 : static_cast<double>(predicted) / static_cast<double>(total);
    q.true_fraction = total == 0 ? 0.0 : static_cast<double>(fired) / static_cast<double>(total);
    return q;
  }
};

// Scores [rows][n_out] of p for the inputs x [rows][dim] (row-major).
MatF score_block(const LinearPredictor& p, const Eigen::Ref<const MatF>& x) {
  const Eigen::Map<const Eigen::RowVectorXf> bias(p.bias.data(), static_cast<Eigen::Index>(p.n_out));
  MatF s(x.rows(), static_cast<Eigen::Index>(p.n_out));
  if (p.rank == 0) {
    s.rowwise() = bias;
    return s;
  }
  const auto r = static_cast<Eigen::Index>(p.rank);
  const ConstMapF w1(p.w1.data(), r, static_cast<Eigen::Index>(p.dim));
  const ConstMapF w2(p.w2.data(), static_cast<Eigen::Index>(p.n_out), r);
  const MatF z = x * w1.transpose();
  s.noalias() = z * w2.transpose();
  s.rowwise() += bias;
  return s;
}

// The top eigenpairs of a symmetric positive semi-definite matrix.
struct TopEigen {
  Eigen::VectorXd values;  // descending
  ColMatF vectors;         // [m][values.size()], orthonormal columns
};

// The `want` largest eigenpairs of s (m x m, lower triangle set). Up to exact_max (or when
// `want` is not much below m) by the full eigensolver; above, by randomized subspace
// iteration (Halko, Martinsson & Tropp 2011, algorithm 4.4): a block of want + 16 random
// vectors multiplied by s and re-orthonormalised a few times, then Rayleigh-Ritz. The full
// solver costs O(m^3) with a large constant (0.5 s at m = 768, 6 s at 1536); the iteration
// 2 m^2 (want + 16) flops per step.
TopEigen top_eigen(const ColMatF& s, Eigen::Index want, std::size_t exact_max) {
  const Eigen::Index m = s.rows();
  const Eigen::Index block = std::min(m, want + 16);
  TopEigen out;
  if (static_cast<std::size_t>(m) <= exact_max || 2 * block > m) {
    // Reads the lower triangle only; eigenvalues ascending.
    const Eigen::SelfAdjointEigenSolver<MatD> eig(s.cast<double>());
    PWPI_CHECK_MSG(eig.info() == Eigen::Success, "eigen-decomposition of the inputs' second moment failed");
    out.values = eig.eigenvalues().reverse().head(want);
    out.vectors = eig.eigenvectors().rowwise().reverse().leftCols(want).cast<float>();
    return out;
  }
  constexpr int kPowerSteps = 4;
  std::uint64_t state = 0x5eed;  // splitmix64: the same start vectors on every platform
  ColMatF q = ColMatF::NullaryExpr(m, block, [&state] {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return static_cast<float>((z ^ (z >> 31)) >> 40) * 0x1.0p-23f - 1.0f;  // uniform [-1, 1)
  });
  ColMatF y(m, block);
  for (int step = 0; step < kPowerSteps; ++step) {
    y.noalias() = s.selfadjointView<Eigen::Lower>() * q;
    const Eigen::HouseholderQR<ColMatF> qr(y);
    q = qr.householderQ() * ColMatF::Identity(m, block);
  }
  y.noalias() = s.selfadjointView<Eigen::Lower>() * q;
  const MatD t = (q.transpose() * y).cast<double>();  // Rayleigh quotient, block x block
  const Eigen::SelfAdjointEigenSolver<MatD> eig(0.5 * (t + t.transpose()));
  PWPI_CHECK_MSG(eig.info() == Eigen::Success, "eigen-decomposition of the Rayleigh quotient failed");
  out.values = eig.eigenvalues().reverse().head(want);
  out.vectors = q * eig.eigenvectors().rowwise().reverse().leftCols(want).cast<float>();
  return out;
}

// The predictor that says "active" for everything (rank 0, bias +1).
LinearPredictor all_active(std::size_t dim, std::size_t n_out) {
  LinearPredictor p;
  p.dim = dim;
  p.n_out = n_out;
  p.bias.assign(n_out, 1.0f);
  return p;
}

}  // namespace

bool is_holdout(std::size_t i, double holdout) {
  return std::floor(static_cast<double>(i + 1) * holdout) > std::floor(static_cast<double>(i) * holdout);
}

std::pair<LinearPredictor, PredictorFitReport> fit_linear_predictor(
    std::span<const float> xs, std::span<const float> targets, std::size_t n, std::size_t dim,
    std::size_t n_out, const PredictorFitOptions& o) {
  PWPI_CHECK(dim > 0 && n_out > 0);
  PWPI_CHECK(xs.size() == n * dim);
  PWPI_CHECK(targets.size() == n * n_out);
  PWPI_CHECK(o.target_recall > 0.0 && o.target_recall <= 1.0);
  PWPI_CHECK(o.energy > 0.0 && o.energy <= 1.0);
  PWPI_CHECK(o.holdout > 0.0 && o.holdout < 1.0);
  PWPI_CHECK(o.ridge >= 0.0);

  // The split: every 1/holdout-th sample held out.
  std::vector<std::size_t> train_rows, hold_rows;
  for (std::size_t i = 0; i < n; ++i) (is_holdout(i, o.holdout) ? hold_rows : train_rows).push_back(i);
  if (train_rows.size() < 2 || hold_rows.empty())
    throw common::InputError(fit_where(),
                             "at least 2 training and 1 held-out sample (holdout " + std::to_string(o.holdout) + ")",
                             std::to_string(n) + " samples", "record more tokens");
  check_finite(xs, dim, "FFN inputs");
  check_finite(targets, n_out, "pre-activations");

  const auto ed = static_cast<Eigen::Index>(dim), eo = static_cast<Eigen::Index>(n_out);
  const auto nt = static_cast<Eigen::Index>(train_rows.size()), nh = static_cast<Eigen::Index>(hold_rows.size());
  const ConstMapF x_all(xs.data(), static_cast<Eigen::Index>(n), ed);
  const ConstMapF t_all(targets.data(), static_cast<Eigen::Index>(n), eo);
  MatF xt(nt, ed), tt(nt, eo), xh(nh, ed), th(nh, eo);
  for (Eigen::Index i = 0; i < nt; ++i) {
    const auto row = static_cast<Eigen::Index>(train_rows[static_cast<std::size_t>(i)]);
    xt.row(i) = x_all.row(row);
    tt.row(i) = t_all.row(row);
  }
  for (Eigen::Index i = 0; i < nh; ++i) {
    const auto row = static_cast<Eigen::Index>(hold_rows[static_cast<std::size_t>(i)]);
    xh.row(i) = x_all.row(row);
    th.row(i) = t_all.row(row);
  }

  // Principal directions of the uncentred second moment. With fewer samples than
  // dimensions the nonzero spectrum of X^T X is that of the Gram matrix X X^T, whose
  // eigenvector v gives the direction X^T v / sqrt(lambda).
  const bool gram = nt <= ed;
  const Eigen::Index m = gram ? nt : ed;
  ColMatF second(m, m);
  second.setZero();
  if (gram)
    second.selfadjointView<Eigen::Lower>().rankUpdate(xt);
  else
    second.selfadjointView<Eigen::Lower>().rankUpdate(xt.transpose());
  std::size_t max_rank = o.max_rank != 0 ? o.max_rank : std::max<std::size_t>(8, dim / 16);
  max_rank = std::min<std::size_t>(max_rank, static_cast<std::size_t>(m));
  const double total = second.diagonal().cast<double>().sum();  // = sum of the eigenvalues
  const TopEigen top = top_eigen(second, static_cast<Eigen::Index>(max_rank), o.exact_eigen_max);
  std::vector<double> lambda;  // kept eigenvalues, descending
  double kept = 0.0;
  for (Eigen::Index j = 0; j < top.values.size() && lambda.size() < max_rank; ++j) {
    // Directions at rounding level cannot be whitened (or told from noise).
    if (top.values(j) <= 1e-10 * top.values(0) || kept >= o.energy * total) break;
    lambda.push_back(top.values(j));
    kept += top.values(j);
  }
  const std::size_t rank = lambda.size();
  const auto r = static_cast<Eigen::Index>(rank);

  PredictorFitReport report;
  report.n_train = train_rows.size();
  report.n_holdout = hold_rows.size();
  report.rank = rank;
  if (rank == 0) {  // no energy in the inputs: the scores could only be constants
    Counts c;
    c.total = static_cast<std::size_t>(nh) * n_out;
    c.predicted = c.total;
    c.fired = static_cast<std::size_t>((th.array() > 0.0f).count());
    c.hit = c.fired;
    const SetQuality q = c.quality();
    report.recall = q.recall;
    report.precision = q.precision;
    report.predicted_fraction = q.predicted_fraction;
    report.true_fraction = q.true_fraction;
    return {all_active(dim, n_out), report};
  }

  // W1 (orthonormal rows) and the whitened training coordinates zw = X W1^T Lambda^-1/2,
  // whose columns are orthonormal.
  Eigen::VectorXd inv_sqrt(r);
  for (Eigen::Index c = 0; c < r; ++c) inv_sqrt(c) = 1.0 / std::sqrt(lambda[static_cast<std::size_t>(c)]);
  MatF w1(r, ed);
  ColMatF zw1(nt, r + 1);  // [zw, 1]: the last column is the intercept's
  if (gram) {
    const ColMatF v = top.vectors.leftCols(r);
    zw1.leftCols(r) = v;
    w1.noalias() = (v * inv_sqrt.cast<float>().asDiagonal()).transpose() * xt;
  } else {
    w1 = top.vectors.leftCols(r).transpose();
    zw1.leftCols(r).noalias() = xt * w1.transpose();
    zw1.leftCols(r) *= inv_sqrt.cast<float>().asDiagonal();
  }
  zw1.col(r).setOnes();

  // Ridge least squares in whitened coordinates: the penalty ridge * mean(lambda) * |b|^2
  // on the unwhitened coefficients b = Lambda^-1/2 beta is sum_c alpha / lambda_c beta_c^2;
  // the intercept is not penalised. The system is small: (rank+1)^2, solved in double.
  const double alpha = o.ridge * kept / static_cast<double>(rank);
  MatD a = zw1.cast<double>().transpose() * zw1.cast<double>();
  for (Eigen::Index c = 0; c < r; ++c) a(c, c) += alpha / lambda[static_cast<std::size_t>(c)];
  const Eigen::LDLT<MatD> ldlt(a);
  PWPI_CHECK_MSG(ldlt.info() == Eigen::Success, "ridge normal equations are not positive definite");
  // The products in float: where an input channel is nearly constant (collinear with the
  // intercept) a is ill-conditioned, but errors along its near-null direction barely move
  // the fitted scores.
  const ColMatF a_inv = ldlt.solve(MatD::Identity(r + 1, r + 1)).cast<float>();
  const ColMatF rhs = zw1.transpose() * tt;          // [rank+1][n_out]
  const ColMatF beta = a_inv * rhs;                  // whitened coefficients; last row: intercept
  tt.noalias() -= zw1 * beta;                        // tt now holds the training residuals

  LinearPredictor p;
  p.dim = dim;
  p.rank = rank;
  p.n_out = n_out;
  p.w1.assign(w1.data(), w1.data() + w1.size());
  p.w2.resize(n_out * rank);
  Eigen::Map<MatF> w2(p.w2.data(), eo, r);
  w2 = (inv_sqrt.cast<float>().asDiagonal() * beta.topRows(r)).transpose();
  std::vector<double> bias0(n_out), sigma(n_out, 0.0);
  for (Eigen::Index s = 0; s < nt; ++s)  // row by row: tt is row-major
    for (Eigen::Index i = 0; i < eo; ++i) sigma[static_cast<std::size_t>(i)] += static_cast<double>(tt(s, i)) * tt(s, i);
  double sigma_mean = 0.0;
  for (std::size_t i = 0; i < n_out; ++i) {
    sigma[i] = std::sqrt(sigma[i] / static_cast<double>(nt));
    sigma_mean += sigma[i];
    bias0[i] = beta(r, static_cast<Eigen::Index>(i));
  }
  sigma_mean /= static_cast<double>(n_out);
  // A floor so that neurons fitted (near) exactly still get a margin; the absolute floor
  // only matters when every neuron is fitted exactly.
  const double sigma_floor = std::max(0.01 * sigma_mean, 1e-30);
  for (double& s : sigma) s = std::max(s, sigma_floor);

  // Held-out scores at margin 0, then the smallest margin meeting the recall target: a
  // fired entry with score s is predicted iff s + m sigma_i > 0, i.e. m > -s / sigma_i.
  p.bias.assign(n_out, 0.0f);
  const MatF s0 = score_block(p, xh);  // without bias
  std::vector<float> need;
  for (Eigen::Index h = 0; h < nh; ++h)
    for (Eigen::Index i = 0; i < eo; ++i)
      if (th(h, i) > 0.0f) {
        const auto u = static_cast<std::size_t>(i);
        need.push_back(static_cast<float>(-(s0(h, i) + bias0[u]) / sigma[u]));
      }
  double margin = 0.0;
  const auto fired = need.size();
  const auto k = static_cast<std::size_t>(std::ceil(o.target_recall * static_cast<double>(fired) - 1e-9));
  if (k > 0) {
    std::nth_element(need.begin(), need.begin() + static_cast<std::ptrdiff_t>(k - 1), need.end());
    const double q = need[k - 1];
    if (q >= 0.0) margin = q + std::max(1e-5 * q, 1e-6);
  }
  // The float bias and scores round: check the recall as the runtime will see it and widen
  // the margin until it holds.
  Counts c;
  for (int attempt = 0;; ++attempt) {
    for (std::size_t i = 0; i < n_out; ++i) p.bias[i] = static_cast<float>(bias0[i] + margin * sigma[i]);
    c = Counts{};
    c.total = static_cast<std::size_t>(nh) * n_out;
    for (Eigen::Index h = 0; h < nh; ++h)
      for (Eigen::Index i = 0; i < eo; ++i) {
        const bool pred = s0(h, i) + p.bias[static_cast<std::size_t>(i)] > 0.0f, fire = th(h, i) > 0.0f;
        c.predicted += pred;
        c.fired += fire;
        c.hit += pred && fire;
      }
    if (c.quality().recall >= o.target_recall) break;
    PWPI_CHECK_MSG(attempt < 64, "predictor margin search did not converge");
    margin = margin * 1.001 + 1e-6 * std::ldexp(1.0, attempt);  // grows until the float bias moves
  }
  const SetQuality q = c.quality();
  report.recall = q.recall;
  report.precision = q.precision;
  report.predicted_fraction = q.predicted_fraction;
  report.true_fraction = q.true_fraction;
  report.margin = margin;
  return {std::move(p), report};
}

void predictor_scores(const LinearPredictor& p, std::span<const float> x, std::span<float> out) {
  PWPI_CHECK(x.size() == p.dim && out.size() == p.n_out);
  PWPI_CHECK(p.w1.size() == p.rank * p.dim && p.w2.size() == p.n_out * p.rank && p.bias.size() == p.n_out);
  const ConstMapF xm(x.data(), 1, static_cast<Eigen::Index>(p.dim));
  Eigen::Map<Eigen::RowVectorXf>(out.data(), static_cast<Eigen::Index>(p.n_out)) = score_block(p, xm);
}

SetQuality measure_and(const LinearPredictor& g, const LinearPredictor* u, std::span<const float> xs,
                       std::span<const float> g_targets, std::span<const float> u_targets, std::size_t n) {
  const std::size_t dim = g.dim, n_out = g.n_out;
  PWPI_CHECK(xs.size() == n * dim && g_targets.size() == n * n_out);
  PWPI_CHECK(g.w1.size() == g.rank * dim && g.w2.size() == n_out * g.rank && g.bias.size() == n_out);
  if (u != nullptr) {
    PWPI_CHECK(u->dim == dim && u->n_out == n_out && u_targets.size() == n * n_out);
    PWPI_CHECK(u->w1.size() == u->rank * dim && u->w2.size() == n_out * u->rank && u->bias.size() == n_out);
  }
  const auto ed = static_cast<Eigen::Index>(dim), eo = static_cast<Eigen::Index>(n_out);
  const ConstMapF x_all(xs.data(), static_cast<Eigen::Index>(n), ed);
  const ConstMapF gt(g_targets.data(), static_cast<Eigen::Index>(n), eo);
  const ConstMapF ut(u != nullptr ? u_targets.data() : g_targets.data(), static_cast<Eigen::Index>(n), eo);
  constexpr Eigen::Index block = 64;  // samples per block: bounds the score matrices
  Counts c;
  c.total = n * n_out;
  for (Eigen::Index b0 = 0; b0 < static_cast<Eigen::Index>(n); b0 += block) {
    const Eigen::Index rows = std::min(block, static_cast<Eigen::Index>(n) - b0);
    const MatF sg = score_block(g, x_all.middleRows(b0, rows));
    const MatF su = u != nullptr ? score_block(*u, x_all.middleRows(b0, rows)) : MatF();
    for (Eigen::Index h = 0; h < rows; ++h)
      for (Eigen::Index i = 0; i < eo; ++i) {
        bool pred = sg(h, i) > 0.0f, fire = gt(b0 + h, i) > 0.0f;
        if (u != nullptr) {
          pred = pred && su(h, i) > 0.0f;
          fire = fire && ut(b0 + h, i) > 0.0f;
        }
        c.predicted += pred;
        c.fired += fire;
        c.hit += pred && fire;
      }
  }
  return c.quality();
}

}  // namespace powerinfer2::prep
