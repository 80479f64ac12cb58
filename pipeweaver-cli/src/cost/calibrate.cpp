#include "cost/calibrate.hpp"

// GCC 12 reports false maybe-uninitialized warnings inside Eigen's AVX-512 kernels.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "common/timer.hpp"

namespace pipeweaver::cost {

namespace {

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown CPU";
}

// CPU time of this thread: a call descheduled by other work on shared cores does not
// count the time it waited.
double thread_cpu_s() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Best CPU seconds per call of `fn` over repetitions filling `budget_s` of wall time (at
// least 2 samples after one warm-up call): the best sample is the least disturbed. A sample
// runs `fn` as many times as it takes to fill 200 us of CPU time, so that calls shorter
// than the thread CPU clock's tick (coarse on some virtual machines) are still measured.
template <class F>
double best_seconds(F&& fn, double budget_s) {
  fn();
  constexpr double kMinSample = 200e-6;
  double best = 1e30;
  common::Stopwatch total;
  int samples = 0;
  long calls = 1;
  while (samples < 2 || total.elapsed_s() < budget_s) {
    const double start = thread_cpu_s();
    for (long i = 0; i < calls; ++i) fn();
    const double took = thread_cpu_s() - start;
    if (took < kMinSample && calls < (1L << 30)) {  // too short to trust: more calls per sample
      calls *= 2;
      continue;
    }
    best = std::min(best, took / static_cast<double>(calls));
    if (++samples > 100000) break;
  }
  return best;
}

struct GemmShape {
  int m, n, k;
};

}  // namespace

DeviceProfile calibrate(const CalibrationOptions& o, const std::function<void(int, int)>& progress) {
  const double budget = o.seconds_per_shape > 0 ? o.seconds_per_shape : (o.quick ? 0.04 : 0.25);
  // Token counts (m) against layer-like widths (k -> n), scaled down to what a CPU core
  // runs in milliseconds: the shape of a transformer layer's GEMMs, small to large.
  const std::vector<int> ms = o.quick ? std::vector<int>{8, 64, 512} : std::vector<int>{8, 32, 128, 512, 1024};
  const std::vector<std::pair<int, int>> kns =
      o.quick ? std::vector<std::pair<int, int>>{{64, 64}, {256, 256}, {512, 1024}}
              : std::vector<std::pair<int, int>>{{64, 64}, {256, 256}, {256, 1024}, {1024, 256}, {512, 512}, {1024, 1024}};
  const std::vector<int> seqs = o.quick ? std::vector<int>{32, 128, 512} : std::vector<int>{32, 64, 128, 256, 512, 1024, 2048};
  std::vector<GemmShape> shapes;
  for (const int m : ms)
    for (const auto& [k, n] : kns)
      if (o.max_dim <= 0 || std::max({m, n, k}) <= o.max_dim) shapes.push_back({m, n, k});
  std::vector<int> lens;
  for (const int l : seqs)
    if (o.max_dim <= 0 || l <= o.max_dim) lens.push_back(l);
  const int total = static_cast<int>(shapes.size() + lens.size());
  int done = 0;

  DeviceProfile p;
  p.device_type = "cpu";
  p.device_name = cpu_name();
  p.backend = "eigen-f32";
  p.threads = Eigen::nbThreads();
  common::Json gemm_rows = common::Json::array(), attn_rows = common::Json::array();
  std::vector<std::pair<double, double>> gemm_rate, attn_rate;  // (flops per call, FLOP/s)

  for (const GemmShape& s : shapes) {
    Eigen::MatrixXf a = Eigen::MatrixXf::Random(s.m, s.k), b = Eigen::MatrixXf::Random(s.k, s.n);
    Eigen::MatrixXf c(s.m, s.n);
    const double sec = best_seconds([&] { c.noalias() = a * b; }, budget);
    const double flops = 2.0 * s.m * s.n * s.k;
    gemm_rate.emplace_back(flops, flops / sec);
    gemm_rows.push_back({{"m", s.m}, {"n", s.n}, {"k", s.k}, {"flops", flops}, {"seconds", sec}, {"flops_per_s", flops / sec}});
    if (progress) progress(++done, total);
  }
  // Attention as written without fused kernels: per head S = Q K^T / sqrt(d), row softmax,
  // O = P V; 4 L^2 d FLOPs per head (the model's formula for bidirectional attention).
  constexpr int kHeads = 4, kHeadDim = 64;
  for (const int len : lens) {
    std::vector<Eigen::MatrixXf> q(kHeads), k(kHeads), v(kHeads);
    for (int h = 0; h < kHeads; ++h) {
      q[h] = Eigen::MatrixXf::Random(len, kHeadDim);
      k[h] = Eigen::MatrixXf::Random(len, kHeadDim);
      v[h] = Eigen::MatrixXf::Random(len, kHeadDim);
    }
    Eigen::MatrixXf scores(len, len), out(len, kHeadDim);
    const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    const double sec = best_seconds(
        [&] {
          for (int h = 0; h < kHeads; ++h) {
            scores.noalias() = q[h] * k[h].transpose();
            scores *= scale;
            for (int r = 0; r < len; ++r) {
              auto row = scores.row(r);
              row = (row.array() - row.maxCoeff()).exp();
              row /= row.sum();
            }
            out.noalias() = scores * v[h];
          }
        },
        budget);
    const double flops = 4.0 * kHeads * kHeadDim * static_cast<double>(len) * len;
    attn_rate.emplace_back(flops, flops / sec);
    attn_rows.push_back({{"seq_len", len}, {"heads", kHeads}, {"head_dim", kHeadDim}, {"flops", flops},
                         {"seconds", sec}, {"flops_per_s", flops / sec}});
    if (progress) progress(++done, total);
  }

  set_efficiencies(p, gemm_rate, attn_rate, o.peak_flops);
  p.measurements = {{"gemm", gemm_rows}, {"attention", attn_rows}, {"seconds_per_shape", budget}};
  return p;
}

}  // namespace pipeweaver::cost
