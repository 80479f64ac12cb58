// The generator, our deterministic math and the distributions: fixed values against an
// outside reference (the splitmix64 / xoshiro256** reference code, run in Python), and
// statistics within tolerance.
#include <algorithm>
#include <cmath>
#include <vector>

#include "spec/mix.hpp"
#include "spec/rng.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver::spec;

TEST_CASE("pipeweaver rng: splitmix64 matches the reference vectors", "[unit]") {
  SplitMix64 sm(1234567);
  CHECK(sm.next() == 0x599ed017fb08fc85ULL);
  CHECK(sm.next() == 0x2c73f08458540fa5ULL);
  CHECK(sm.next() == 0x883ebce5a3f27c77ULL);
}

TEST_CASE("pipeweaver rng: xoshiro256** seeded by splitmix64 matches the reference", "[unit]") {
  Rng a(1);
  CHECK(a.next() == 0xb3f2af6d0fc710c5ULL);
  CHECK(a.next() == 0x853b559647364ceaULL);
  CHECK(a.next() == 0x92f89756082a4514ULL);
  CHECK(a.next() == 0x642e1c7bc266a3a7ULL);
  Rng b(42);
  CHECK(b.next() == 0x15780b2e0c2ec716ULL);
  CHECK(b.next() == 0x6104d9866d113a7eULL);
}

TEST_CASE("pipeweaver rng: uniform draws stay in range and are unbiased", "[unit]") {
  Rng rng(7);
  const int n = 200000;
  double sum = 0.0;
  std::vector<int> counts(7, 0);
  for (int i = 0; i < n; ++i) {
    const double u = rng.uniform01();
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    sum += u;
    const auto k = rng.uniform_int(-3, 3);
    REQUIRE(k >= -3);
    REQUIRE(k <= 3);
    ++counts[static_cast<std::size_t>(k + 3)];
  }
  CHECK(sum / n == Approx(0.5).margin(0.005));
  for (int c : counts) CHECK(c == Approx(n / 7.0).epsilon(0.03));
  CHECK(rng.uniform_int(5, 5) == 5);
}

TEST_CASE("pipeweaver rng: det_log and det_exp agree with libm", "[unit]") {
  for (double x : {1e-300, 1e-9, 0.001, 0.3, 0.7071, 1.0, 1.5, 2.0, 10.0, 12345.678, 1e100}) {
    INFO("x = " << x);
    CHECK(det_log(x) == Approx(std::log(x)).epsilon(1e-14).margin(1e-15));
  }
  for (double x : {-700.0, -20.0, -1.0, -0.1, 0.0, 0.1, 0.5, 1.0, 3.7, 20.0, 700.0}) {
    INFO("x = " << x);
    CHECK(det_exp(x) == Approx(std::exp(x)).epsilon(1e-14));
  }
  CHECK(det_exp(0.0) == 1.0);
  CHECK(det_log(1.0) == 0.0);
}

TEST_CASE("pipeweaver rng: the normal quantile matches tabulated values", "[unit]") {
  CHECK(normal_quantile(0.5) == Approx(0.0).margin(1e-12));
  CHECK(normal_quantile(0.975) == Approx(1.959963984540054).epsilon(1e-8));
  CHECK(normal_quantile(0.8413447460685429) == Approx(1.0).epsilon(1e-8));
  CHECK(normal_quantile(0.001) == Approx(-3.090232306167813).epsilon(1e-8));
  CHECK(normal_quantile(1e-10) == Approx(-6.361340902404056).epsilon(1e-8));
  CHECK(normal_quantile(0.3) == Approx(-normal_quantile(0.7)).epsilon(1e-12));
}

TEST_CASE("pipeweaver rng: normal draws have mean 0 and standard deviation 1", "[unit]") {
  Rng rng(3);
  const int n = 200000;
  double sum = 0.0, sum2 = 0.0;
  for (int i = 0; i < n; ++i) {
    const double z = rng.normal();
    sum += z;
    sum2 += z * z;
  }
  const double mean = sum / n;
  CHECK(mean == Approx(0.0).margin(0.01));
  CHECK(std::sqrt(sum2 / n - mean * mean) == Approx(1.0).epsilon(0.01));
}

namespace {
Distribution dist(const char* text, bool integer = true, double lo = 0, double hi = 1e9) {
  const common::Json doc = common::Json::parse(text);
  return parse_distribution(common::json_root(doc, "d.json"), integer, lo, hi);
}
}  // namespace

TEST_CASE("pipeweaver distributions: a fixed seed gives fixed first values", "[unit]") {
  // Pinned: any change to the generator, the math or the rounding changes every trace.
  // The values come from an independent Python implementation (libm log/exp).
  Rng rng(1);
  const Distribution d = dist(R"({"dist": "lognormal", "median": 100, "sigma": 1.0, "min": 1, "max": 5000})");
  std::vector<std::int64_t> got;
  for (int i = 0; i < 6; ++i) got.push_back(d.sample_int(rng));
  CHECK(got == std::vector<std::int64_t>{170, 105, 121, 76, 168, 34});
}

TEST_CASE("pipeweaver distributions: lognormal median and mean within tolerance", "[unit]") {
  Rng rng(11);
  const Distribution d = dist(R"({"dist": "lognormal", "median": 200, "sigma": 0.5})", false, 0, 1e9);
  const int n = 100000;
  std::vector<double> xs(n);
  double sum = 0.0;
  for (auto& x : xs) sum += (x = d.sample(rng));
  std::nth_element(xs.begin(), xs.begin() + n / 2, xs.end());
  CHECK(xs[n / 2] == Approx(200.0).epsilon(0.02));
  CHECK(sum / n == Approx(200.0 * std::exp(0.125)).epsilon(0.02));  // median * e^(sigma^2 / 2)
}

TEST_CASE("pipeweaver distributions: clipping, uniform integers and weighted choice", "[unit]") {
  Rng rng(5);
  const Distribution clipped =
      dist(R"({"dist": "lognormal", "median": 100, "sigma": 2.0, "min": 50, "max": 150})");
  int at_min = 0, at_max = 0;
  for (int i = 0; i < 10000; ++i) {
    const auto x = clipped.sample_int(rng);
    REQUIRE(x >= 50);
    REQUIRE(x <= 150);
    at_min += x == 50;
    at_max += x == 150;
  }
  CHECK(at_min > 3000);  // P(z < ln(0.5)/2) = 0.365
  CHECK(at_max > 3000);

  const Distribution uni = dist(R"({"dist": "uniform", "min": 2, "max": 6})");
  double sum = 0.0;
  for (int i = 0; i < 50000; ++i) sum += static_cast<double>(uni.sample_int(rng));
  CHECK(sum / 50000 == Approx(4.0).epsilon(0.01));

  const Distribution choice = dist(R"({"dist": "choice", "values": [1, 3, 5], "weights": [0.5, 0.3, 0.2]})");
  int ones = 0, fives = 0;
  for (int i = 0; i < 50000; ++i) {
    const auto x = choice.sample_int(rng);
    ones += x == 1;
    fives += x == 5;
  }
  CHECK(ones / 50000.0 == Approx(0.5).margin(0.01));
  CHECK(fives / 50000.0 == Approx(0.2).margin(0.01));

  const Distribution fixed = dist("7");
  CHECK(fixed.sample_int(rng) == 7);
}

TEST_CASE("pipeweaver distributions: bad distributions name the field", "[unit]") {
  using pwtest::error_of;
  CHECK(error_of([] { dist(R"({"dist": "gamma", "k": 2})"); }) ==
        "d.json: /dist: expected one of fixed, uniform, lognormal, choice, got the string \"gamma\"");
  CHECK(error_of([] { dist(R"({"dist": "uniform", "min": 5, "max": 2})"); }) ==
        "d.json: /max: expected a number >= min (5), got 2");
  CHECK(error_of([] { dist(R"({"dist": "lognormal", "median": 10, "sigma": 9})"); }) ==
        "d.json: /sigma: expected a number in [0, 4], got 9");
  CHECK(error_of([] { dist(R"({"dist": "fixed", "value": 2.5})"); }) ==
        "d.json: /value: expected an integer, got 2.5");
  CHECK(error_of([] { dist(R"({"dist": "choice", "values": [1, 2], "weights": [1]})"); }) ==
        "d.json: /weights: expected an array of 2 weights (one per value), got an array of 1");
  CHECK(error_of([] { dist(R"({"dist": "fixed", "value": 1, "median": 3})"); }) ==
        "d.json: /median: unknown member; expected one of: dist, value");
}
