// The low-rank activation predictor's fitting math (src/sparse/predictor_fit): on synthetic
// inputs x = C^T z (+ noise) with pre-activations A x - tau (~10% positive) the chosen rank
// is the latent dimension and the recall target holds on fresh samples; full-rank inputs
// need a large margin; degenerate inputs fail cleanly or predict everything; the 7b shape
// is timed ([slow]).
// GCC 12 reports false (maybe-)uninitialized warnings inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "common/errors.hpp"
#include "recall_bound.hpp"
#include "prep/predictor_fit.hpp"
#include "test_support.hpp"

namespace prep = powerinfer2::prep;

namespace {

using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// A layer's statistics: inputs x = C^T z + offset + noise (z ~ N(0, I_k)), pre-activations
// t = A x - tau with tau_i the 90% quantile of a_i . x, so that ~10% of neurons fire.
struct Layer {
  std::size_t dim, n_out;
  MatF c;                // [k][dim]
  Eigen::RowVectorXf offset;  // [dim], a constant channel when nonzero
  float noise;
  MatF a;                // [n_out][dim]
  Eigen::RowVectorXf tau;     // [n_out]
  Eigen::RowVectorXf spread;  // [n_out], the std of a_i . x
  float target_noise = 0.0f;  // a part of t not predictable from x, in units of spread

  Layer(std::mt19937& rng, std::size_t dim_, std::size_t n_out_, std::size_t k, float noise_, bool constant)
      : dim(dim_), n_out(n_out_), noise(noise_) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const auto ed = static_cast<Eigen::Index>(dim), eo = static_cast<Eigen::Index>(n_out);
    c = MatF::NullaryExpr(static_cast<Eigen::Index>(k), ed, [&] { return nd(rng); });
    offset = Eigen::RowVectorXf::Zero(ed);
    if (constant) offset = Eigen::RowVectorXf::NullaryExpr(ed, [&] { return nd(rng); });
    a = MatF::NullaryExpr(eo, ed, [&] { return nd(rng) / std::sqrt(static_cast<float>(dim)); });
    // a_i . x ~ N(a_i . offset, |C a_i|^2 + noise^2 |a_i|^2); 1.2816 = the normal's 90% quantile.
    const MatF ca = a * c.transpose();
    tau.resize(eo);
    spread.resize(eo);
    for (Eigen::Index i = 0; i < eo; ++i) {
      spread(i) = std::sqrt(ca.row(i).squaredNorm() + noise * noise * a.row(i).squaredNorm());
      tau(i) = a.row(i).dot(offset) + 1.2816f * spread(i);
    }
  }

  // n samples: xs [n][dim], targets [n][n_out].
  void sample(std::mt19937& rng, std::size_t n, std::vector<float>& xs, std::vector<float>& targets) const {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    const auto en = static_cast<Eigen::Index>(n);
    const MatF z = MatF::NullaryExpr(en, c.rows(), [&] { return nd(rng); });
    MatF x = z * c;
    x.rowwise() += offset;
    x += MatF::NullaryExpr(en, x.cols(), [&] { return noise * nd(rng); });
    MatF t = x * a.transpose();
    t.rowwise() -= tau;
    if (target_noise > 0.0f)
      t += MatF::NullaryExpr(en, t.cols(), [&] { return target_noise * nd(rng); }) * spread.asDiagonal();
    xs.assign(x.data(), x.data() + x.size());
    targets.assign(t.data(), t.data() + t.size());
  }
};

// max |W1 W1^T - I|.
double orthonormality_error(const prep::LinearPredictor& p) {
  const Eigen::Map<const MatF> w1(p.w1.data(), static_cast<Eigen::Index>(p.rank), static_cast<Eigen::Index>(p.dim));
  const MatF g = w1 * w1.transpose();
  return (g - MatF::Identity(g.rows(), g.cols())).cwiseAbs().maxCoeff();
}

// max over the rows c of C of |c - W1^T W1 c| / |c|: whether W1 spans C's row space.
double span_error(const prep::LinearPredictor& p, const MatF& c) {
  const Eigen::Map<const MatF> w1(p.w1.data(), static_cast<Eigen::Index>(p.rank), static_cast<Eigen::Index>(p.dim));
  double worst = 0.0;
  for (Eigen::Index j = 0; j < c.rows(); ++j) {
    const Eigen::RowVectorXf row = c.row(j);
    const Eigen::RowVectorXf proj = (row * w1.transpose()) * w1;
    worst = std::max(worst, static_cast<double>((row - proj).norm() / row.norm()));
  }
  return worst;
}

// p's recall sample by sample on n samples (xs [n][dim], targets [n][n_out]).
recall_bound::Samples per_sample(const prep::LinearPredictor& p, std::span<const float> xs, std::span<const float> ts,
                                 std::size_t n) {
  recall_bound::Samples out;
  for (std::size_t s = 0; s < n; ++s) {
    const prep::SetQuality q = prep::measure_and(p, nullptr, xs.subspan(s * p.dim, p.dim),
                                             ts.subspan(s * p.n_out, p.n_out), {}, 1);
    const double fired = q.true_fraction * static_cast<double>(p.n_out);
    out.add(fired, q.recall * fired);
  }
  return out;
}

// Measures p on n fresh samples of `layer` and checks the recall against recall_bound.hpp's
// bound for the fit's held-out firings.
prep::SetQuality check_fresh_recall(const prep::LinearPredictor& p, const prep::PredictorFitReport& r, const Layer& layer,
                                  std::mt19937& rng, std::size_t n, double target) {
  std::vector<float> xs, ts;
  layer.sample(rng, n, xs, ts);
  const prep::SetQuality q = prep::measure_and(p, nullptr, xs, ts, {}, n);
  const recall_bound::Samples fresh = per_sample(p, xs, ts, n);
  const double heldout_fired = r.true_fraction * static_cast<double>(r.n_holdout * layer.n_out);
  const double bound = recall_bound::bound(target, heldout_fired, fresh);
  std::printf("  %zu fresh samples: recall %.4f (target %.4f, bound %.4f, design effect %.2f) precision %.4f "
              "predicted %.4f true %.4f\n",
              n, q.recall, target, bound, fresh.design_effect(), q.precision, q.predicted_fraction, q.true_fraction);
  CHECK(q.recall >= bound);
  return q;
}

void print(const char* what, const prep::PredictorFitReport& r) {
  std::printf("%s: rank %zu, held-out recall %.4f precision %.4f predicted %.4f true %.4f, margin %.3f "
              "(train %zu, held out %zu)\n",
              what, r.rank, r.recall, r.precision, r.predicted_fraction, r.true_fraction, r.margin, r.n_train,
              r.n_holdout);
}

}  // namespace

TEST_CASE("powerinfer2 predictor fit: low-rank inputs give their rank and the recall on fresh samples", "[unit]") {
  // (dim, n): n_train > dim takes the dim x dim path, n_train < dim the Gram path.
  const auto [dim, n, constant] = GENERATE(std::tuple<std::size_t, std::size_t, bool>{160, 800, false},
                                           std::tuple<std::size_t, std::size_t, bool>{512, 400, false},
                                           std::tuple<std::size_t, std::size_t, bool>{512, 400, true});
  const std::size_t k = 10, n_out = 300;
  CAPTURE(dim, n, constant);
  std::mt19937 rng(static_cast<unsigned>(dim + n + constant));
  const Layer layer(rng, dim, n_out, k, 1e-3f, constant);
  std::vector<float> xs, ts;
  layer.sample(rng, n, xs, ts);

  prep::PredictorFitOptions o;
  const auto [p, report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
  print("low rank", report);
  CHECK(report.rank == k + (constant ? 1 : 0));
  CHECK(report.n_holdout == n / 4);
  CHECK(report.n_train == n - n / 4);
  CHECK(report.true_fraction > 0.05);
  CHECK(report.true_fraction < 0.15);
  CHECK(report.precision > 0.8);
  CHECK(orthonormality_error(p) < 1e-4);
  CHECK(span_error(p, layer.c) < 1e-3);

  // Fresh samples: nearly noiseless inputs leave the recall at least the target itself.
  std::vector<float> xs2, ts2;
  const std::size_t n2 = 1000;
  layer.sample(rng, n2, xs2, ts2);
  const prep::SetQuality q = prep::measure_and(p, nullptr, xs2, ts2, {}, n2);
  std::printf("  fresh samples: recall %.4f precision %.4f predicted %.4f true %.4f\n", q.recall, q.precision,
              q.predicted_fraction, q.true_fraction);
  CHECK(q.recall >= o.target_recall);
  CHECK(q.precision > 0.5);
  CHECK(q.precision > 3 * q.true_fraction);

  // predictor_scores against a double-precision W2 (W1 x) + b.
  std::vector<float> out(n_out);
  double max_diff = 0.0;
  for (std::size_t s = 0; s < 5; ++s) {
    const std::span<const float> x(xs2.data() + s * dim, dim);
    prep::predictor_scores(p, x, out);
    std::vector<double> z(p.rank, 0.0);
    for (std::size_t c = 0; c < p.rank; ++c)
      for (std::size_t j = 0; j < dim; ++j) z[c] += static_cast<double>(p.w1[c * dim + j]) * x[j];
    for (std::size_t i = 0; i < n_out; ++i) {
      double ref = p.bias[i];
      for (std::size_t c = 0; c < p.rank; ++c) ref += static_cast<double>(p.w2[i * p.rank + c]) * z[c];
      max_diff = std::max(max_diff, std::abs(ref - out[i]) / (1.0 + std::abs(ref)));
    }
  }
  std::printf("  predictor_scores vs double reference: max relative difference %.3g\n", max_diff);
  CHECK(max_diff < 1e-4);
}

TEST_CASE("powerinfer2 predictor fit: the margin calibrated on held-out samples carries to fresh ones", "[unit]") {
  const std::size_t dim = 64, n = 2000, n_out = 100, k = 8;
  std::mt19937 rng(5);
  Layer layer(rng, dim, n_out, k, 1e-3f, false);
  layer.target_noise = 0.3f;
  std::vector<float> xs, ts;
  layer.sample(rng, n, xs, ts);
  const prep::PredictorFitOptions o;
  const auto [p, report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
  print("noisy targets", report);
  CHECK(report.rank == k);
  CHECK(report.margin > 0.5);
  // The smallest margin: the held-out recall lands on the target, not well past it.
  CHECK(report.recall < o.target_recall + 0.002);

  const prep::SetQuality q = check_fresh_recall(p, report, layer, rng, 2000, o.target_recall);
  CHECK(std::abs(q.recall - report.recall) < 0.005);
  CHECK(std::abs(q.precision - report.precision) < 0.05);
}

TEST_CASE("powerinfer2 predictor fit: randomized subspace iteration matches the full eigensolver", "[unit]") {
  // The Gram path (n_train 300 < dim) both ways: exact_eigen_max 0 forces the randomized
  // iteration (a block of 32 + 16 vectors in 300 dimensions), dim the full solver. noise 0.3
  // leaves a flat tail: the rank is capped at dim / 16 = 32.
  const std::size_t dim = 512, n = 400, n_out = 200, k = 12;
  const float noise = GENERATE(1e-3f, 0.3f);
  CAPTURE(noise);
  std::mt19937 rng(9);
  const Layer layer(rng, dim, n_out, k, noise, false);
  std::vector<float> xs, ts;
  layer.sample(rng, n, xs, ts);
  prep::PredictorFitOptions o;
  o.exact_eigen_max = 0;
  const auto [fast, fast_report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
  o.exact_eigen_max = dim;
  const auto [exact, exact_report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
  print("randomized", fast_report);
  print("exact", exact_report);
  CHECK(fast_report.rank == exact_report.rank);
  CHECK(fast_report.rank == (noise < 0.01f ? k : dim / 16));
  CHECK(orthonormality_error(fast) < 1e-4);
  // Noise tilts the estimated subspace: the same for both.
  CHECK(span_error(fast, layer.c) < 3e-2);
  CHECK(std::abs(span_error(fast, layer.c) - span_error(exact, layer.c)) < 1e-3);

  // The share of the inputs' energy that each basis keeps.
  const Eigen::Map<const MatF> x(xs.data(), static_cast<Eigen::Index>(n), static_cast<Eigen::Index>(dim));
  auto kept = [&x, dim](const prep::LinearPredictor& p) {
    const Eigen::Map<const MatF> w1(p.w1.data(), static_cast<Eigen::Index>(p.rank), static_cast<Eigen::Index>(dim));
    return static_cast<double>((x * w1.transpose()).squaredNorm() / x.squaredNorm());
  };
  std::printf("  energy kept: randomized %.7f, exact %.7f\n", kept(fast), kept(exact));
  CHECK(kept(fast) > kept(exact) - 1e-4);
  CHECK(std::abs(fast_report.precision - exact_report.precision) < 0.01);
  std::mt19937 fresh_rng(10);
  check_fresh_recall(fast, fast_report, layer, fresh_rng, 1000, o.target_recall);
  fresh_rng.seed(10);
  check_fresh_recall(exact, exact_report, layer, fresh_rng, 1000, o.target_recall);
}

TEST_CASE("powerinfer2 predictor fit: full-rank inputs keep the recall with a large margin", "[unit]") {
  const std::size_t dim = 64, n = 600, n_out = 200;
  std::mt19937 rng(7);
  const Layer layer(rng, dim, n_out, dim, 0.0f, false);  // k = dim: no low-rank structure
  std::vector<float> xs, ts;
  layer.sample(rng, n, xs, ts);

  const double target = GENERATE(0.9, 0.99, 0.999);
  CAPTURE(target);
  prep::PredictorFitOptions o;
  o.target_recall = target;
  const auto [p, report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
  print("full rank", report);
  CHECK(report.rank == 8);  // max(8, dim / 16): capped
  // The smallest margin: the held-out recall lands on the target, not well past it.
  CHECK(report.recall < target + 0.005);
  CHECK(report.margin > 0.5);
  CHECK(report.precision < 0.5);
  CHECK(report.predicted_fraction > report.true_fraction);
  check_fresh_recall(p, report, layer, rng, 2000, target);

  // The margin grows with the target.
  prep::PredictorFitOptions lower = o;
  lower.target_recall = target - 0.05;
  const auto [p2, report2] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, lower);
  CHECK(report2.margin < report.margin);
  CHECK(report2.predicted_fraction < report.predicted_fraction);
}

TEST_CASE("powerinfer2 predictor fit: dReLU sets (gate AND up) measured jointly", "[unit]") {
  const std::size_t dim = 128, n = 600, n_out = 150, k = 8;
  std::mt19937 rng(11);
  const Layer gate(rng, dim, n_out, k, 1e-3f, false);
  // Up: the same inputs, other weights, no threshold (each up positive half the time).
  Layer up = gate;
  up.a = Layer(rng, dim, n_out, k, 1e-3f, false).a;
  up.tau.setZero();
  std::mt19937 r1(3), r2(3);  // the same x for both
  std::vector<float> xs, gt, xs_u, ut;
  gate.sample(r1, n, xs, gt);
  up.sample(r2, n, xs_u, ut);
  REQUIRE(xs == xs_u);

  const prep::PredictorFitOptions o;
  const auto [pg, rg] = prep::fit_linear_predictor(xs, gt, n, dim, n_out, o);
  const auto [pu, ru] = prep::fit_linear_predictor(xs, ut, n, dim, n_out, o);
  print("gate", rg);
  print("up", ru);

  std::mt19937 f1(5), f2(5);
  std::vector<float> xf, gf, xf_u, uf;
  const std::size_t n2 = 500;
  gate.sample(f1, n2, xf, gf);
  up.sample(f2, n2, xf_u, uf);
  const prep::SetQuality both = prep::measure_and(pg, &pu, xf, gf, uf, n2);
  const prep::SetQuality g_only = prep::measure_and(pg, nullptr, xf, gf, {}, n2);
  std::printf("  fresh: AND recall %.4f precision %.4f true %.4f; gate alone recall %.4f true %.4f\n", both.recall,
              both.precision, both.true_fraction, g_only.recall, g_only.true_fraction);

  // Against a count through predictor_scores.
  std::size_t hit = 0, predicted = 0, fired = 0;
  std::vector<float> sg(n_out), su(n_out);
  for (std::size_t s = 0; s < n2; ++s) {
    prep::predictor_scores(pg, std::span<const float>(xf.data() + s * dim, dim), sg);
    prep::predictor_scores(pu, std::span<const float>(xf.data() + s * dim, dim), su);
    for (std::size_t i = 0; i < n_out; ++i) {
      const bool pred = sg[i] > 0 && su[i] > 0, fire = gf[s * n_out + i] > 0 && uf[s * n_out + i] > 0;
      predicted += pred;
      fired += fire;
      hit += pred && fire;
    }
  }
  const double total = static_cast<double>(n2 * n_out);
  // Matrix-matrix and matrix-vector products may round a borderline score differently.
  CHECK(std::abs(both.true_fraction - static_cast<double>(fired) / total) < 1e-12);
  CHECK(std::abs(both.predicted_fraction - static_cast<double>(predicted) / total) < 1e-3);
  CHECK(std::abs(both.recall - static_cast<double>(hit) / static_cast<double>(fired)) < 1e-3);
  CHECK(both.true_fraction < g_only.true_fraction);
  CHECK(both.true_fraction > 0.02);
  CHECK(both.recall >= 0.98);  // two 0.99-recall predictors ANDed
  CHECK(both.precision > 0.5);
}

TEST_CASE("powerinfer2 predictor fit: degenerate inputs fail cleanly or predict everything", "[unit]") {
  const std::size_t dim = 32, n_out = 20;
  std::mt19937 rng(1);
  const Layer layer(rng, dim, n_out, 4, 1e-3f, false);
  std::vector<float> xs, ts;
  const prep::PredictorFitOptions o;

  SECTION("too few samples") {
    layer.sample(rng, 3, xs, ts);
    CHECK_THROWS_AS(prep::fit_linear_predictor(xs, ts, 3, dim, n_out, o), common::InputError);
    layer.sample(rng, 4, xs, ts);
    CHECK_NOTHROW(prep::fit_linear_predictor(xs, ts, 4, dim, n_out, o));
  }
  SECTION("all-zero inputs: rank 0, every neuron predicted active") {
    const std::size_t n = 40;
    layer.sample(rng, n, xs, ts);
    std::fill(xs.begin(), xs.end(), 0.0f);
    const auto [p, report] = prep::fit_linear_predictor(xs, ts, n, dim, n_out, o);
    CHECK(p.rank == 0);
    CHECK(report.rank == 0);
    CHECK(report.recall == 1.0);
    CHECK(report.predicted_fraction == 1.0);
    std::vector<float> out(n_out);
    std::vector<float> x(dim, 0.5f);
    prep::predictor_scores(p, x, out);
    for (float s : out) CHECK(s > 0.0f);
    CHECK(prep::measure_and(p, nullptr, xs, ts, {}, n).predicted_fraction == 1.0);
  }
  SECTION("non-finite values") {
    layer.sample(rng, 40, xs, ts);
    ts[5 * n_out + 3] = std::nanf("");
    CHECK_THROWS_WITH(prep::fit_linear_predictor(xs, ts, 40, dim, n_out, o),
                      Catch::Contains("predictor fit") && Catch::Contains("sample 5"));
  }
  SECTION("sizes that do not match are bugs") {
    layer.sample(rng, 40, xs, ts);
    CHECK_THROWS_AS(prep::fit_linear_predictor(xs, ts, 41, dim, n_out, o), common::InternalError);
    prep::PredictorFitOptions bad = o;
    bad.holdout = 0.0;
    CHECK_THROWS_AS(prep::fit_linear_predictor(xs, ts, 40, dim, n_out, bad), common::InternalError);
  }
}

TEST_CASE("powerinfer2 predictor fit: 7b-shape layer timing", "[slow]") {
  // dim 4096, n_out 14336, 1024 samples. Generating A x for 14336 neurons directly would
  // cost 120 GFLOP, so the pre-activations are drawn in the latent space: t = D z - tau.
  // noise 1: rank capped at 256 (the slowest case).
  const std::size_t dim = 4096, n_out = 14336;
  const auto [n, k, noise] = GENERATE(std::tuple<std::size_t, Eigen::Index, float>{1024, 64, 1e-3f},
                                      std::tuple<std::size_t, Eigen::Index, float>{1024, 64, 0.1f},
                                      std::tuple<std::size_t, Eigen::Index, float>{1024, 64, 1.0f},
                                      std::tuple<std::size_t, Eigen::Index, float>{512, 64, 1.0f},
                                      std::tuple<std::size_t, Eigen::Index, float>{2048, 64, 1.0f});
  CAPTURE(n, k, noise);
  const auto ed = static_cast<Eigen::Index>(dim), eo = static_cast<Eigen::Index>(n_out);
  std::mt19937 rng(42);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const MatF c = MatF::NullaryExpr(k, ed, [&] { return nd(rng); });
  const MatF d = MatF::NullaryExpr(eo, k, [&] { return nd(rng); });
  // m samples: inputs x = z C + noise, pre-activations t = z D^T - tau + a little noise.
  auto draw = [&](std::size_t m, MatF& x, MatF& t) {
    const MatF z = MatF::NullaryExpr(static_cast<Eigen::Index>(m), k, [&] { return nd(rng); });
    x = z * c;
    x += MatF::NullaryExpr(x.rows(), ed, [&] { return noise * nd(rng); });
    t = z * d.transpose();
    t.array() -= 1.2816f * std::sqrt(static_cast<float>(k));  // ~10% fire
    t += MatF::NullaryExpr(t.rows(), eo, [&] { return 0.01f * nd(rng); });
  };
  auto span_of = [](const MatF& m) { return std::span<const float>(m.data(), static_cast<std::size_t>(m.size())); };
  MatF x, t;
  draw(n, x, t);

  const prep::PredictorFitOptions o;
  const auto start = std::chrono::steady_clock::now();
  const auto [p, report] = prep::fit_linear_predictor(span_of(x), span_of(t), n, dim, n_out, o);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  print("7b shape", report);
  std::printf("  fit time %.3f s (single-threaded Eigen, n %zu, dim %zu, n_out %zu, noise %.3g)\n", seconds, n, dim,
              n_out, static_cast<double>(noise));
  const std::size_t n_fresh = 512;
  draw(n_fresh, x, t);
  const prep::SetQuality q = prep::measure_and(p, nullptr, span_of(x), span_of(t), {}, n_fresh);
  const double heldout_fired = report.true_fraction * static_cast<double>(report.n_holdout * n_out);
  const double bound = recall_bound::bound(o.target_recall, heldout_fired, per_sample(p, span_of(x), span_of(t), n_fresh));
  std::printf("  %zu fresh samples: recall %.4f (bound %.4f) precision %.4f\n", n_fresh, q.recall, bound, q.precision);
  CHECK(q.recall >= bound);
  CHECK(p.rank == report.rank);
  CHECK(report.rank <= 256);
}
