// Micro-benchmark of the CPU kernels (not a test): memory read bandwidth, matvec GB/s and
// GFLOP/s for each weight type on TinyLlama-1.1B's FFN shapes, and matmul (prefill) GFLOP/s.
//
//   bench_powerinfer2_ops [-t 1,2] [--cold-mib 768] [--tokens 512] [--reps 5] [--decode]
//                         [--model M.gguf ...]
//
// --model times the decode-step matvecs over a model file's own matrices, as mdl::Model
// holds them (Q8_0 / Q4_0 repacked unless --no-rows16): the engine's decode minus everything
// but the products.
//
// "hot" runs one matrix again and again (it may sit in the last-level cache); "cold" cycles
// through copies totalling --cold-mib, as decoding a model larger than the cache does, so
// its GB/s compare with the streaming read bandwidth. Figures are the best of --reps.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <sys/mman.h>

#include <CLI/CLI.hpp>

#include "common/aligned_buffer.hpp"
#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "io/gguf_types.hpp"
#include "model/model.hpp"
#include "ops/dot.hpp"
#include "ops/fp16.hpp"
#include "ops/intrin.hpp"
#include "ops/matmul.hpp"
#include "ops/packed.hpp"
#include "ops/quants.hpp"

namespace ops = powerinfer2::ops;
namespace mdl = powerinfer2::model;
using powerinfer2::io::GgmlType;

namespace {

struct Options {
  std::vector<std::size_t> threads{1, 2};
  std::size_t cold_mib = 768;
  std::size_t tokens = 512;
  int reps = 5;
  std::vector<std::string> types{"f32", "f16", "q8_0", "q4_0"};
  bool no_matmul = false;
  std::vector<std::size_t> shape;  // rows, cols: replaces the default shapes
  bool huge_pages = false;
  bool no_rows16 = false;
};

// Weight and bandwidth buffers: 2 MiB aligned, with transparent huge pages when asked
// (fewer TLB misses when streaming hundreds of MiB).
common::AlignedBuffer<std::uint8_t> big_buffer(std::size_t bytes, bool huge_pages) {
  constexpr std::size_t k2MiB = std::size_t{1} << 21;
  common::AlignedBuffer<std::uint8_t> b((bytes + k2MiB - 1) / k2MiB * k2MiB, k2MiB);
  if (huge_pages) ::madvise(b.data(), b.size(), MADV_HUGEPAGE);
  std::memset(b.data(), 0, b.size());  // fault the pages in now
  return b;
}

// Sum of a buffer read with wide loads, several independent accumulators; kPrefetch also
// prefetches each line 4 KiB ahead into L2, as the matvec kernels do.
template <bool kPrefetch>
double read_sum(const float* p, std::size_t n) {
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    if constexpr (kPrefetch)
      for (std::size_t k = 0; k < 4; ++k) _mm_prefetch(reinterpret_cast<const char*>(p + i + 16 * k) + 4096, _MM_HINT_T1);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(p + i + 32));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(p + i + 48));
  }
  double s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
  for (; i < n; ++i) s += p[i];
  return s;
#else
  float s[16] = {};
  for (std::size_t i = 0; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; ++k) s[k] += p[i + k];
  double t = 0;
  for (float v : s) t += v;
  return t;
#endif
}

template <class F>
double best_seconds(int reps, F&& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    common::Stopwatch sw;
    f();
    best = std::min(best, sw.elapsed_s());
  }
  return best;
}

double g_sink = 0;  // keeps results alive

void bench_bandwidth(const Options& o) {
  const std::size_t n = std::max<std::size_t>(o.cold_mib, 256) * (1u << 20) / sizeof(float);
  common::AlignedBuffer<std::uint8_t> bytes = big_buffer(n * sizeof(float), o.huge_pages);
  auto* buf = reinterpret_cast<float*>(bytes.data());
  auto measure = [&](const char* how, auto sum) {
    std::printf("memory read bandwidth (%zu MiB, streaming sum%s):\n", n * sizeof(float) >> 20, how);
    for (std::size_t t : o.threads) {
      common::ThreadPool pool(t);
      const double s = best_seconds(o.reps, [&] {
        pool.run_on_all([&](std::size_t i) {
          const std::size_t chunk = n / pool.size() / 64 * 64;
          const std::size_t b = i * chunk, e = i + 1 == pool.size() ? n : b + chunk;
          g_sink += sum(buf + b, e - b);
        });
      });
      std::printf("  %zu thread%s: %6.1f GB/s\n", t, t > 1 ? "s" : " ", static_cast<double>(n * sizeof(float)) / s * 1e-9);
    }
  };
  measure("", &read_sum<false>);
  measure(", prefetching 4 KiB ahead", &read_sum<true>);
}

GgmlType parse_type(const std::string& s) {
  if (s == "f32") return GgmlType::F32;
  if (s == "f16") return GgmlType::F16;
  if (s == "q8_0") return GgmlType::Q8_0;
  if (s == "q4_0") return GgmlType::Q4_0;
  throw CLI::ValidationError("--types", "unknown type " + s);
}

// One matrix of `type`, from random values quantized / converted as a model file would be.
std::vector<std::uint8_t> make_rows(GgmlType type, std::size_t n_rows, std::size_t n_cols) {
  const ops::WeightMatrix shape{type, nullptr, n_rows, n_cols};
  std::vector<std::uint8_t> out(n_rows * shape.row_bytes());
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> row(n_cols);
  for (std::size_t r = 0; r < n_rows; ++r) {
    for (float& v : row) v = normal(rng);
    std::uint8_t* dst = out.data() + r * shape.row_bytes();
    switch (type) {
      case GgmlType::F32: std::memcpy(dst, row.data(), shape.row_bytes()); break;
      case GgmlType::F16: ops::fp32_to_fp16_row(row.data(), reinterpret_cast<ops::fp16_t*>(dst), n_cols); break;
      case GgmlType::Q8_0: ops::quantize_row_q8_0(row.data(), reinterpret_cast<ops::BlockQ8_0*>(dst), n_cols); break;
      default: ops::quantize_row_q4_0(row.data(), reinterpret_cast<ops::BlockQ4_0*>(dst), n_cols); break;
    }
  }
  return out;
}

// The weight bytes in the layout asked for (rows16: Q8_0 / Q4_0 repacked, ops/packed.hpp).
std::vector<std::uint8_t> make_weights(GgmlType type, ops::WeightLayout layout, std::size_t n_rows, std::size_t n_cols) {
  std::vector<std::uint8_t> rows = make_rows(type, n_rows, n_cols);
  if (layout == ops::WeightLayout::gguf) return rows;
  const ops::PackedWeights packed(ops::WeightMatrix{type, rows.data(), n_rows, n_cols});
  const auto* p = static_cast<const std::uint8_t*>(packed.view().data);
  return std::vector<std::uint8_t>(p, p + packed.size_bytes());
}

std::string kind_name(GgmlType type, ops::WeightLayout layout) {
  return std::string(powerinfer2::io::ggml_type_name(type)) + (layout == ops::WeightLayout::rows16 ? "/rows16" : "");
}

void bench_matvec(const Options& o, GgmlType type, ops::WeightLayout layout, std::size_t n_rows, std::size_t n_cols) {
  const std::vector<std::uint8_t> one = make_weights(type, layout, n_rows, n_cols);
  const std::size_t bytes = one.size();
  const std::size_t copies = std::max<std::size_t>(2, (o.cold_mib << 20) / bytes + 1);
  common::AlignedBuffer<std::uint8_t> all = big_buffer(copies * bytes, o.huge_pages);
  for (std::size_t c = 0; c < copies; ++c) std::memcpy(all.data() + c * bytes, one.data(), bytes);
  std::vector<float> x(n_cols), y(n_rows);
  std::mt19937 rng(2);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  const double flop = 2.0 * static_cast<double>(n_rows) * static_cast<double>(n_cols);
  for (std::size_t t : o.threads) {
    common::ThreadPool pool(t);
    ops::Workspace ws(1, n_cols, t);
    auto run = [&](std::size_t c) {
      ops::matvec(ops::WeightMatrix{type, all.data() + c * bytes, n_rows, n_cols, layout}, x, y, pool, ws);
      g_sink += y[0];
    };
    const int hot_iters = 50;
    const double hot = best_seconds(o.reps, [&] { for (int i = 0; i < hot_iters; ++i) run(0); }) / hot_iters;
    run(copies - 1);
    const double cold = best_seconds(o.reps, [&] { for (std::size_t c = 0; c < copies; ++c) run(c); }) / static_cast<double>(copies);
    std::printf("  %-11s %5zu x %-5zu %zu thr: hot %7.1f us %6.1f GB/s %6.1f GFLOP/s | cold %7.1f us %6.1f GB/s %6.1f GFLOP/s\n",
                kind_name(type, layout).c_str(), n_rows, n_cols, t, hot * 1e6,
                static_cast<double>(bytes) / hot * 1e-9, flop / hot * 1e-9, cold * 1e6,
                static_cast<double>(bytes) / cold * 1e-9, flop / cold * 1e-9);
  }
}

void bench_matmul(const Options& o, GgmlType type, ops::WeightLayout layout, std::size_t n_rows, std::size_t n_cols) {
  const std::vector<std::uint8_t> bytes = make_weights(type, layout, n_rows, n_cols);
  common::AlignedBuffer<std::uint8_t> w(bytes.size());  // rows16 wants 64-byte alignment
  std::memcpy(w.data(), bytes.data(), bytes.size());
  std::vector<float> x(o.tokens * n_cols), y(o.tokens * n_rows);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  const double flop = 2.0 * static_cast<double>(n_rows) * static_cast<double>(n_cols) * static_cast<double>(o.tokens);
  for (std::size_t t : o.threads) {
    common::ThreadPool pool(t);
    ops::Workspace ws(o.tokens, n_cols, t);
    const ops::WeightMatrix m{type, w.data(), n_rows, n_cols, layout};
    ops::matmul(m, x, o.tokens, y, pool, ws);
    const double s = best_seconds(std::max(2, o.reps / 2), [&] { ops::matmul(m, x, o.tokens, y, pool, ws); });
    g_sink += y[0];
    std::printf("  %-11s %5zu x %-5zu x %zu tokens, %zu thr: %8.2f ms %7.1f GFLOP/s\n",
                kind_name(type, layout).c_str(), n_rows, n_cols, o.tokens, t, s * 1e3,
                flop / s * 1e-9);
  }
}

// The matvecs of one decode step of TinyLlama-1.1B (22 layers of q, k, v, o, gate, up,
// down, then the output head; every layer's weights at their own address): an upper bound
// for decode tokens/s from the matrix products alone.
void bench_decode(const Options& o, GgmlType type, ops::WeightLayout layout) {
  struct Shape {
    std::size_t rows, cols;
  };
  const Shape layer[] = {{2048, 2048}, {256, 2048}, {256, 2048}, {2048, 2048}, {5632, 2048}, {5632, 2048}, {2048, 5632}};
  const std::size_t n_layers = 22;
  std::vector<std::vector<std::uint8_t>> one;
  std::size_t layer_bytes = 0;
  for (const Shape& sh : layer) {
    one.push_back(make_weights(type, layout, sh.rows, sh.cols));
    layer_bytes += one.back().size();
  }
  const std::vector<std::uint8_t> head = make_weights(type, layout, 32000, 2048);
  const std::size_t total = n_layers * layer_bytes + head.size();
  common::AlignedBuffer<std::uint8_t> all = big_buffer(total, o.huge_pages);
  std::vector<ops::WeightMatrix> mats;
  std::size_t off = 0;
  for (std::size_t l = 0; l < n_layers; ++l) {
    for (std::size_t i = 0; i < std::size(layer); ++i) {
      std::memcpy(all.data() + off, one[i].data(), one[i].size());
      mats.push_back(ops::WeightMatrix{type, all.data() + off, layer[i].rows, layer[i].cols, layout});
      off += one[i].size();
    }
  }
  std::memcpy(all.data() + off, head.data(), head.size());
  mats.push_back(ops::WeightMatrix{type, all.data() + off, 32000, 2048, layout});
  std::vector<float> x(5632, 0.01f), y(32000);
  for (std::size_t t : o.threads) {
    common::ThreadPool pool(t);
    ops::Workspace ws(1, 5632, t);
    auto step = [&] {
      for (const ops::WeightMatrix& m : mats)
        ops::matvec(m, std::span<const float>(x.data(), m.n_cols), std::span<float>(y.data(), m.n_rows), pool, ws);
      g_sink += y[0];
    };
    step();
    const int tokens = 8;
    const double s = best_seconds(o.reps, [&] { for (int i = 0; i < tokens; ++i) step(); }) / tokens;
    std::printf("  %-11s %zu thr: %6.2f ms/token = %5.1f tokens/s, %5.1f GB/s (%.0f MiB of weights per token)\n",
                kind_name(type, layout).c_str(), t, s * 1e3, 1.0 / s,
                static_cast<double>(total) / s * 1e-9, static_cast<double>(total) / (1 << 20));
  }
}

// The same decode-step matvecs over a model file's own matrices (as the engine holds them):
// separates the products from the rest of the engine's decode step.
void bench_model_decode(const Options& o, const std::string& path) {
  common::ThreadPool pool(*std::max_element(o.threads.begin(), o.threads.end()));
  const mdl::Model model(path, &pool, !o.no_rows16 && ops::rows16_pays());
  std::vector<ops::WeightMatrix> mats;
  std::size_t total = 0;
  for (const auto& L : model.weights.layers)
    for (const ops::WeightMatrix* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.gate, &L.up, &L.down}) mats.push_back(*m);
  mats.push_back(model.weights.output);
  for (const ops::WeightMatrix& m : mats)
    total += m.layout == ops::WeightLayout::rows16 ? ops::rows16_bytes(m.type, m.n_rows, m.n_cols) : m.n_rows * m.row_bytes();
  std::vector<float> x(model.config.ffn_dim + model.config.dim), y(model.config.vocab + model.config.ffn_dim);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);
  for (std::size_t t : o.threads) {
    common::ThreadPool tpool(t);
    ops::Workspace ws(1, std::max(model.config.ffn_dim, model.config.dim), t);
    auto step = [&] {
      for (const ops::WeightMatrix& m : mats)
        ops::matvec(m, std::span<const float>(x.data(), m.n_cols), std::span<float>(y.data(), m.n_rows), tpool, ws);
      g_sink += y[0];
    };
    step();
    const int tokens = 8;
    const double s = best_seconds(o.reps, [&] { for (int i = 0; i < tokens; ++i) step(); }) / tokens;
    std::printf("  %s %s %zu thr: %6.2f ms/token = %5.1f tokens/s, %5.1f GB/s (%.0f MiB of weights per token)\n",
                path.c_str(), kind_name(mats[0].type, mats[0].layout).c_str(), t, s * 1e3, 1.0 / s,
                static_cast<double>(total) / s * 1e-9, static_cast<double>(total) / (1 << 20));
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app("Micro-benchmark of powerinfer2's CPU kernels (matvec / matmul per weight type)");
  app.add_option("-t,--threads", o.threads, "Thread counts to run")->delimiter(',');
  app.add_option("--cold-mib", o.cold_mib, "Bytes of weight copies cycled through for the cold figures (MiB)");
  app.add_option("--tokens", o.tokens, "Tokens of the matmul (prefill) runs");
  app.add_option("--reps", o.reps, "Repetitions; the best is reported");
  app.add_option("--types", o.types, "Weight types: f32, f16, q8_0, q4_0")->delimiter(',');
  app.add_flag("--no-matmul", o.no_matmul, "Skip the matmul runs");
  bool decode = false;
  app.add_flag("--decode", decode, "Also time the matvecs of a whole TinyLlama-1.1B decode step");
  app.add_flag("--no-rows16", o.no_rows16, "Skip the Q8_0 / Q4_0 runs on the rows16 layout");
  app.add_flag("--huge-pages", o.huge_pages, "Back the big buffers with transparent huge pages (madvise)");
  app.add_option("--shape", o.shape, "ROWS,COLS of the weight instead of 5632x2048 and 2048x5632")
      ->delimiter(',')
      ->expected(2);
  std::vector<std::string> models;
  app.add_option("--model", models, "Also time the decode-step matvecs over these GGUF models' own matrices");
  CLI11_PARSE(app, argc, argv);

  auto load = [] {
    std::ifstream f("/proc/loadavg");
    std::string l1;
    f >> l1;
    return l1.empty() ? std::string("?") : l1;
  };
  std::printf("kernels: %s; load average before: %s\n", ops::simd_name(), load().c_str());
  bench_bandwidth(o);
  // Each type in the GGUF layout, and Q8_0 / Q4_0 also repacked to rows16.
  std::vector<std::pair<GgmlType, ops::WeightLayout>> kinds;
  for (const std::string& s : o.types) {
    const GgmlType type = parse_type(s);
    kinds.emplace_back(type, ops::WeightLayout::gguf);
    if (!o.no_rows16 && (type == GgmlType::Q8_0 || type == GgmlType::Q4_0)) kinds.emplace_back(type, ops::WeightLayout::rows16);
  }
  // TinyLlama-1.1B: ffn_gate / ffn_up are 5632 rows of 2048, ffn_down 2048 rows of 5632.
  std::vector<std::pair<std::size_t, std::size_t>> shapes = {{5632, 2048}, {2048, 5632}};
  if (o.shape.size() == 2) shapes = {{o.shape[0], o.shape[1]}};
  std::printf("matvec (bytes = weight bytes, FLOP = 2 rows cols):\n");
  for (auto [type, layout] : kinds)
    for (auto [rows, cols] : shapes) bench_matvec(o, type, layout, rows, cols);
  if (!o.no_matmul) {
    std::printf("matmul (prefill):\n");
    for (auto [type, layout] : kinds)
      for (auto [rows, cols] : shapes) bench_matmul(o, type, layout, rows, cols);
  }
  if (decode) {
    std::printf("decode step, matvecs only (TinyLlama-1.1B: 22 layers + output head):\n");
    for (auto [type, layout] : kinds) bench_decode(o, type, layout);
  }
  if (!models.empty()) std::printf("decode step, matvecs only, over the model's matrices:\n");
  for (const std::string& m : models) bench_model_decode(o, m);
  std::printf("load average after: %s (other processes share the cores when it is above ~%zu)\n", load().c_str(),
              o.threads.empty() ? std::size_t{1} : *std::max_element(o.threads.begin(), o.threads.end()));
  return g_sink == 12345.678 ? 1 : 0;
}
