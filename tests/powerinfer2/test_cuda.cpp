// The GPU kernels (ops/cuda) against CPU references, and the engine's GPU paths against its
// CPU paths. [cuda] cases skip visibly ("no CUDA device: ...") where there is no device; the
// [unit] cases check the refusals a machine without one gives.
#include <algorithm>
#include <cmath>
#include <optional>
#include <random>
#include <vector>

#include "common/cuda.hpp"
#include "common/thread_pool.hpp"
#include "engine/runtime.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "model/forward.hpp"
#include "model/gpu_offload.hpp"
#include "model/model.hpp"
#include "model/pi2_model.hpp"
#include "model_maker.hpp"
#include "ops/cuda/cuda_ops.hpp"
#include "ops/quants.hpp"
#include "prep/pi2_writer.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
namespace eng = powerinfer2::engine;
namespace mdl = powerinfer2::model;
namespace mm = powerinfer2::tools;
namespace ops = powerinfer2::ops;
namespace gpu = powerinfer2::ops::cuda;
namespace sp = powerinfer2::sparse;
namespace prep = powerinfer2::prep;

namespace {

#define REQUIRE_DEVICE()                                                       \
  do {                                                                         \
    const std::string missing = common::cuda::no_device_message();             \
    if (!missing.empty()) PWPI_SKIP(missing);                                  \
  } while (0)

const io::GgmlType kTypes[] = {io::GgmlType::F32, io::GgmlType::F16, io::GgmlType::Q8_0, io::GgmlType::Q4_0};

// A random matrix in the GGUF bytes of `type` and its dequantized floats (the reference).
struct HostMatrix {
  io::GgmlType type;
  std::size_t rows, cols;
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;  // dequantized
};

HostMatrix random_matrix(io::GgmlType type, std::size_t rows, std::size_t cols, std::mt19937& rng, float scale = 1.0f) {
  HostMatrix m{type, rows, cols, {}, {}};
  const std::size_t rb = *io::ggml_row_bytes(type, cols);
  m.bytes.resize(rows * rb);
  m.values.resize(rows * cols);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> row(cols);
  for (std::size_t r = 0; r < rows; ++r) {
    for (float& v : row) v = nd(rng);
    ops::quantize_row(type, row.data(), m.bytes.data() + r * rb, cols);
    ops::dequantize_row(type, m.bytes.data() + r * rb, m.values.data() + r * cols, cols);
  }
  return m;
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

// ||a - b|| / ||b||, b the reference.
double rel_error(std::span<const float> a, std::span<const double> b) {
  REQUIRE(a.size() == b.size());
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    REQUIRE(std::isfinite(a[i]));
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

double act_ref(ops::Activation a, double g, double u) {
  switch (a) {
    case ops::Activation::swiglu: return g / (1.0 + std::exp(-g)) * u;
    case ops::Activation::reglu: return g > 0 ? g * u : 0.0;
    case ops::Activation::drelu: return g > 0 && u > 0 ? g * u : 0.0;
  }
  return 0.0;
}

std::filesystem::path tiny_model(const testing::TempDir& dir, const std::string& name, io::GgmlType type,
                                 mdl::FfnActivation act) {
  mm::MakeModelOptions o;
  o.shape = *mm::find_preset("tiny");
  o.type = type;
  o.activation = act;
  o.seed = 11;
  o.sparsity = act == mdl::FfnActivation::swiglu ? 0.0 : 0.9;
  common::ThreadPool pool(2);
  const std::filesystem::path p = dir / name;
  mm::make_model(o, p.string(), pool);
  return p;
}

std::vector<mdl::TokenId> some_tokens(std::size_t n, std::uint32_t vocab) {
  std::vector<mdl::TokenId> t(n);
  for (std::size_t i = 0; i < n; ++i) t[i] = static_cast<mdl::TokenId>((i * 7919 + 13) % vocab);
  return t;
}

// An F32 copy of a model whose weights are the model's dequantized values (metadata kept).
void dequantized_copy(const std::filesystem::path& in, const std::filesystem::path& out) {
  const io::GgufFile f(in.string());
  io::GgufWriter w;
  for (const io::GgufKeyValue& kv : f.metadata())
    if (kv.key != "general.alignment") w.set(kv.key, kv.value);
  std::vector<std::vector<float>> keep;
  for (std::size_t i = 0; i < f.tensor_count(); ++i) {
    const io::GgufTensorView t = f.tensor(i);
    const std::vector<std::uint64_t> shape(t.shape.begin(), t.shape.end());
    const std::size_t ne0 = shape.empty() ? 1 : shape[0], rows = t.n_elements / ne0;
    std::vector<float> v(t.n_elements);
    const std::size_t rb = *io::ggml_row_bytes(t.type, ne0);
    for (std::size_t r = 0; r < rows; ++r) ops::dequantize_row(t.type, t.data.data() + r * rb, v.data() + r * ne0, ne0);
    keep.push_back(std::move(v));
    w.add_tensor_f32(std::string(t.name), shape, keep.back());
  }
  w.write(out.string());
}

}  // namespace

TEST_CASE("powerinfer2 cuda: dequantization on the device equals the CPU's", "[cuda]") {
  REQUIRE_DEVICE();
  std::mt19937 rng(1);
  for (const io::GgmlType t : kTypes) {
    const HostMatrix m = random_matrix(t, 37, 96, rng);
    const std::vector<float> d = gpu::dequantize_on_device(t, m.bytes.data(), m.rows, m.cols);
    INFO("type " << io::ggml_type_name(t));
    REQUIRE(d == m.values);  // the same products of the same floats: bit-equal
  }
}

TEST_CASE("powerinfer2 cuda: products and FFN match a double-precision reference", "[cuda]") {
  REQUIRE_DEVICE();
  std::mt19937 rng(2);
  const std::size_t dim = 160, ffn = 224;  // not powers of two
  gpu::GemmRunner runner(70, ffn, ffn, ffn * dim);
  for (const io::GgmlType t : kTypes) {
    const HostMatrix wq = random_matrix(t, 96, dim, rng), wk = random_matrix(t, 32, dim, rng);
    const gpu::DeviceMatrix dq = gpu::upload_matrix(t, wq.bytes.data(), wq.rows, wq.cols);
    const gpu::DeviceMatrix dk = gpu::upload_matrix(t, wk.bytes.data(), wk.rows, wk.cols);
    for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{70}}) {
      const std::vector<float> x = random_vector(n * dim, rng);
      std::vector<float> yq(n * wq.rows, NAN), yk(n * wk.rows, NAN);
      const gpu::DeviceMatrix* ws[] = {&dq, &dk};
      float* ys[] = {yq.data(), yk.data()};
      runner.products(ws, ys, x.data(), n);
      for (const auto& [m, y] : {std::pair{&wq, &yq}, std::pair{&wk, &yk}}) {
        std::vector<double> ref(n * m->rows);
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t r = 0; r < m->rows; ++r) {
            double s = 0.0;
            for (std::size_t c = 0; c < dim; ++c) s += double(m->values[r * dim + c]) * x[i * dim + c];
            ref[i * m->rows + r] = s;
          }
        const double e = rel_error(*y, ref);
        INFO("type " << io::ggml_type_name(t) << " n " << n << " rows " << m->rows << ": rel error " << e);
        CHECK(e < 2e-3);  // TF32 operands (10-bit mantissa), F32 sums
      }
    }
    // The whole FFN, each activation.
    const HostMatrix g = random_matrix(t, ffn, dim, rng), u = random_matrix(t, ffn, dim, rng);
    const HostMatrix dn = random_matrix(t, dim, ffn, rng);
    const gpu::DeviceMatrix dg = gpu::upload_matrix(t, g.bytes.data(), ffn, dim);
    const gpu::DeviceMatrix du = gpu::upload_matrix(t, u.bytes.data(), ffn, dim);
    const gpu::DeviceMatrix dd = gpu::upload_matrix(t, dn.bytes.data(), dim, ffn);
    for (const ops::Activation a : {ops::Activation::swiglu, ops::Activation::reglu, ops::Activation::drelu}) {
      const std::size_t n = 9;
      const std::vector<float> x = random_vector(n * dim, rng);
      std::vector<float> out(n * dim, NAN);
      runner.ffn(dg, du, dd, a, x.data(), n, out.data());
      std::vector<double> ref(n * dim, 0.0), h(ffn);
      for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < ffn; ++j) {
          double gs = 0.0, us = 0.0;
          for (std::size_t c = 0; c < dim; ++c) {
            gs += double(g.values[j * dim + c]) * x[i * dim + c];
            us += double(u.values[j * dim + c]) * x[i * dim + c];
          }
          h[j] = act_ref(a, gs, us);
        }
        for (std::size_t d = 0; d < dim; ++d) {
          double s = 0.0;
          for (std::size_t j = 0; j < ffn; ++j) s += double(dn.values[d * ffn + j]) * h[j];
          ref[i * dim + d] = s;
        }
      }
      const double e = rel_error(out, ref);
      INFO("type " << io::ggml_type_name(t) << " activation " << int(a) << ": rel error " << e);
      CHECK(e < 4e-3);  // two TF32 products in a row
    }
  }
}

TEST_CASE("powerinfer2 cuda: neuron bundles on the device compute their share of the FFN", "[cuda]") {
  REQUIRE_DEVICE();
  std::mt19937 rng(3);
  const std::size_t dim = 128, ffn = 200;
  for (const io::GgmlType t : kTypes) {
    const mdl::BundleGeometry geo = mdl::bundle_geometry(t, dim, ffn, 1);
    const HostMatrix g = random_matrix(t, ffn, dim, rng), u = random_matrix(t, ffn, dim, rng);
    const std::vector<float> down = random_vector(ffn * dim, rng, 0.1f);  // [ffn][dim]: column j of W_down
    // The bundles, and what the GPU's copy of each down column dequantizes to.
    std::vector<std::uint8_t> bundles(ffn * geo.stride, 0);
    std::vector<float> down_q(ffn * dim);
    for (std::size_t j = 0; j < ffn; ++j) {
      std::uint8_t* b = bundles.data() + j * geo.stride;
      const std::size_t rb = geo.part_bytes;
      std::copy_n(g.bytes.data() + j * rb, rb, b);
      std::copy_n(u.bytes.data() + j * rb, rb, b + geo.up_offset());
      ops::quantize_row(t, down.data() + j * dim, b + geo.down_offset(), dim);
      ops::dequantize_row(t, b + geo.down_offset(), down_q.data() + j * dim, dim);
    }
    // Layer 0: neurons [0, 150) in two uploads; layer 1: none; layer 2: neurons [150, 200).
    const std::vector<std::size_t> per_layer = {150, 0, 50};
    const gpu::BundleLayout layout{t, dim, geo.stride, geo.up_offset(), geo.down_offset()};
    for (const ops::Activation a : {ops::Activation::reglu, ops::Activation::drelu, ops::Activation::swiglu}) {
      gpu::NeuronFfn nf(layout, a, per_layer, 13);
      nf.upload(0, 0, bundles.data(), 100);
      nf.upload(0, 100, bundles.data() + 100 * geo.stride, 50);
      nf.upload(2, 0, bundles.data() + 150 * geo.stride, 50);
      for (const std::size_t n : {std::size_t{1}, std::size_t{13}}) {
        const std::vector<float> x = random_vector(n * dim, rng);
        for (const std::size_t layer : {std::size_t{0}, std::size_t{1}, std::size_t{2}}) {
          const std::size_t j0 = layer == 2 ? 150 : 0, j1 = layer == 0 ? 150 : layer == 2 ? 200 : 0;
          std::vector<float> out(n * dim, 0.5f);  // add_result adds to what is there
          nf.launch(layer, x.data(), n);
          nf.add_result(out.data());
          std::vector<double> ref(n * dim, 0.5);
          for (std::size_t i = 0; i < n; ++i)
            for (std::size_t j = j0; j < j1; ++j) {
              double gs = 0.0, us = 0.0;
              for (std::size_t c = 0; c < dim; ++c) {
                gs += double(g.values[j * dim + c]) * x[i * dim + c];
                us += double(u.values[j * dim + c]) * x[i * dim + c];
              }
              const double h = act_ref(a, gs, us);
              for (std::size_t d = 0; d < dim; ++d) ref[i * dim + d] += h * down_q[j * dim + d];
            }
          const double e = rel_error(out, ref);
          INFO("type " << io::ggml_type_name(t) << " activation " << int(a) << " n " << n << " layer " << layer
                       << ": rel error " << e);
          CHECK(e < 1e-5);  // F32 arithmetic, another summation order
        }
      }
    }
  }
}

TEST_CASE("powerinfer2 cuda: a prompt on the GPU gives the CPU's logits", "[cuda]") {
  REQUIRE_DEVICE();
  testing::TempDir dir;
  for (const io::GgmlType t : {io::GgmlType::F32, io::GgmlType::Q4_0}) {
    const auto path = tiny_model(dir, "m.gguf", t, mdl::FfnActivation::swiglu);
    // The reference: the CPU engine on F32 weights equal to the model's (dequantized), so that
    // the CPU's Q8_0 activations of a quantized model do not count as the GPU's error.
    const auto f32 = dir / "m-f32.gguf";
    dequantized_copy(path, f32);
    common::ThreadPool pool(2);
    const mdl::Model ref_model(f32.string(), &pool);
    const mdl::Model model(path.string(), &pool);
    const std::vector<mdl::TokenId> prompt = some_tokens(40, model.config.vocab);
    const std::size_t vocab = model.config.vocab;
    mdl::Forward cpu(ref_model, pool, 64, 16);  // batches of 16: positions > 0 come from the cache
    std::vector<float> ref_logits(prompt.size() * vocab);
    cpu.prefill(prompt, 0, ref_logits);
    const std::vector<double> ref(ref_logits.begin(), ref_logits.end());
    // Every layer on the device, then (a budget that holds the scratch and one layer) products only.
    for (const bool whole : {true, false}) {
      std::uint64_t budget = std::uint64_t{1} << 30;
      if (!whole) budget = mdl::GpuProducts(model, 16, 64, budget).device_bytes() - 1;  // not all of it
      mdl::GpuProducts products(model, 16, 64, budget);
      REQUIRE(products.whole_layers() == whole);
      if (whole) REQUIRE(products.resident_layers() == model.config.n_layer);
      mdl::Forward fwd(model, pool, 64, 16);
      fwd.set_product_offload(&products);
      std::vector<float> gpu_logits(ref_logits.size(), NAN);
      fwd.prefill(prompt, 0, gpu_logits);
      const double e = rel_error(gpu_logits, ref);
      INFO("type " << io::ggml_type_name(t) << (whole ? ", whole layers" : ", products only") << ": logits rel error "
                   << e << ", " << products.resident_layers() << " layers on the device");
      CHECK(e < (whole ? 5e-3 : 3e-2));  // TF32 products; products only: CPU layers use Q8_0 activations
      // Decoding on the CPU after a GPU prompt reads the K and V the GPU wrote.
      const std::span<const float> r = cpu.decode(3, prompt.size());
      const std::vector<double> next_ref(r.begin(), r.end());
      const std::span<const float> next = fwd.decode(3, prompt.size());
      const double ed = rel_error(next, next_ref);
      INFO("decode after the prompt: rel error " << ed);
      CHECK(ed < (t == io::GgmlType::F32 ? 5e-3 : 3e-2));  // decode on the CPU: Q8_0 activations for Q4_0
    }
  }
}

TEST_CASE("powerinfer2 cuda: hot neurons on the GPU give the CPU-only sparse engine's logits", "[cuda]") {
  REQUIRE_DEVICE();
  testing::TempDir dir;
  const auto dense = tiny_model(dir, "m.gguf", io::GgmlType::F32, mdl::FfnActivation::drelu);
  {
    const io::GgufFile src(dense.string());
    prep::Pi2WriteSpec spec;
    spec.cluster_size = 4;
    prep::write_pi2(src, mdl::load_config(src), spec, (dir / "m.pi2.gguf").string());
  }
  const std::vector<mdl::TokenId> prompt = some_tokens(12, 512);
  struct Run {
    std::vector<float> logits;
    sp::MemoryPlan plan;
    std::uint64_t product_bytes = 0;
  };
  auto run = [&](eng::Device d, std::uint64_t gpu_bytes, std::optional<double> offload) {
    eng::RuntimeOptions o;
    o.n_ctx = 64;
    o.sparse.oracle = true;  // exact active sets: the sparse path is the dense FFN
    o.sparse.budget.offload_ffn = offload;
    o.device = d;
    o.gpu_memory_bytes = gpu_bytes;
    eng::Runtime rt((dir / "m.pi2.gguf").string(), o);
    Run r;
    std::span<const float> lg = rt.forward.prefill(prompt, 0);
    r.logits.insert(r.logits.end(), lg.begin(), lg.end());
    for (std::size_t i = 0; i < 6; ++i) {
      lg = rt.forward.decode(static_cast<mdl::TokenId>(i * 31 % 512), prompt.size() + i);
      r.logits.insert(r.logits.end(), lg.begin(), lg.end());
    }
    r.plan = rt.sparse->plan();
    if (rt.gpu) r.product_bytes = rt.gpu->device_bytes();
    return r;
  };
  const Run cpu = run(eng::Device::cpu, 0, std::nullopt);
  const std::vector<double> ref(cpu.logits.begin(), cpu.logits.end());
  // Everything on the GPU, then a GPU budget that holds 40% of the clusters.
  const Run all = run(eng::Device::cuda, std::uint64_t{256} << 20, std::nullopt);
  REQUIRE(all.plan.gpu_clusters == all.plan.total_clusters);
  CHECK(rel_error(all.logits, ref) < 5e-3);
  const io::GgufFile file((dir / "m.pi2.gguf").string());
  const mdl::Pi2Model pi2 = mdl::load_pi2(file, mdl::load_config(file));
  const gpu::BundleLayout layout{pi2.geo.type, pi2.geo.dim, pi2.geo.stride, pi2.geo.up_offset(), pi2.geo.down_offset()};
  const std::vector<std::size_t> widest(1, pi2.geo.ffn);
  const std::uint64_t run_bytes = gpu::NeuronFfn::device_bytes(layout, widest, 64) - pi2.geo.ffn * pi2.geo.stride;
  const std::size_t part = all.plan.total_clusters * 2 / 5;
  const std::uint64_t gpu_budget = all.product_bytes + run_bytes + part * pi2.geo.cluster_bytes();
  for (const std::optional<double> offload : {std::optional<double>{}, std::optional<double>{0.8}}) {
    const Run g = run(eng::Device::cuda, gpu_budget, offload);
    CHECK(g.plan.gpu_clusters == part);
    const double e = rel_error(g.logits, ref);
    INFO("offload " << offload.value_or(0.0) << ": logits rel error " << e);
    CHECK(e < 5e-3);  // prompts' products in TF32; the FFN in F32 on both sides
  }
}

// The forward pass's offload hook without a device: a stand-in computing the products with the
// scalar reference kernels must give the CPU engine's logits, and the hook must be asked for
// every product of a prompt (q/k/v, o, the head) and for each layer's FFN (declined here: the
// engine then computes it itself).
TEST_CASE("powerinfer2 cuda: the offload hook gets every prompt product (a CPU stand-in)", "[unit]") {
  struct StandIn final : mdl::ProductOffload {
    std::size_t products_calls = 0, ffn_calls = 0, layers_calls = 0;
    bool products(std::span<const ops::Product> ps, const float* x, std::size_t n) override {
      for (const ops::Product& p : ps) ops::ref::matmul(*p.w, {x, n * p.w->n_cols}, n, p.y);
      ++products_calls;
      return true;
    }
    bool ffn(std::size_t, const float*, std::size_t, float*) override {
      ++ffn_calls;
      return false;
    }
    bool layers(float*, std::size_t, std::size_t, const Batch&) override {
      ++layers_calls;
      return false;
    }
  };
  testing::TempDir dir;
  const auto path = tiny_model(dir, "m.gguf", io::GgmlType::Q8_0, mdl::FfnActivation::swiglu);
  common::ThreadPool pool(2);
  const mdl::Model model(path.string(), &pool, /*repack=*/false);  // GGUF layout: what ref:: reads
  const std::vector<mdl::TokenId> prompt = some_tokens(40, model.config.vocab);
  const std::size_t vocab = model.config.vocab;
  mdl::Forward cpu(model, pool, 64, 16);
  std::vector<float> want(prompt.size() * vocab), got(prompt.size() * vocab, NAN);
  cpu.prefill(prompt, 0, want);
  StandIn hook;
  mdl::Forward fwd(model, pool, 64, 16);
  fwd.set_product_offload(&hook);
  fwd.prefill(prompt, 0, got);
  const double e = rel_error(got, std::vector<double>(want.begin(), want.end()));
  INFO("logits rel error " << e);
  CHECK(e < 1e-5);  // the same Q8_0 activations, another summation order
  const std::size_t batches = 3, layers = model.config.n_layer;  // 40 tokens in batches of 16
  CHECK(hook.layers_calls == batches);
  CHECK(hook.ffn_calls == batches * layers);
  CHECK(hook.products_calls == batches * (2 * layers + 1));  // q/k/v and o per layer, the head
  // One token (decode) never goes to the hook.
  const std::size_t before = hook.products_calls;
  (void)fwd.decode(5, prompt.size());
  CHECK(hook.products_calls == before);
}

TEST_CASE("powerinfer2 cuda: without a device, --device cuda is refused with one line", "[unit]") {
  if (common::cuda::device_count() > 0) PWPI_SKIP("a CUDA device is present: the refusal cannot be seen");
  testing::TempDir dir;
  const auto path = tiny_model(dir, "m.gguf", io::GgmlType::F32, mdl::FfnActivation::swiglu);
  const auto r = testing::run_cli(POWERINFER2_CLI, "generate -m " + testing::shell_quote(path.string()) +
                                                       " -p hi -n 2 --device cuda");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("no CUDA device") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);  // the error line and its hint
  // auto falls back to the CPU, --gpu-memory then unused.
  const auto a = testing::run_cli(POWERINFER2_CLI, "generate -m " + testing::shell_quote(path.string()) +
                                                       " -p hi -n 2 --device auto --gpu-memory 1GiB");
  INFO(a.err);
  CHECK(a.exit_code == 0);
}

TEST_CASE("powerinfer2 cuda: bad --device and --gpu-memory values are usage errors", "[unit]") {
  testing::TempDir dir;
  const auto path = tiny_model(dir, "m.gguf", io::GgmlType::F32, mdl::FfnActivation::swiglu);
  const std::string m = " -m " + testing::shell_quote(path.string()) + " -p hi -n 1";
  CHECK(testing::run_cli(POWERINFER2_CLI, "generate" + m + " --device tpu").exit_code == 2);
  const auto r = testing::run_cli(POWERINFER2_CLI, "generate" + m + " --device cpu --gpu-memory 1GiB");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--gpu-memory") != std::string::npos);
  CHECK(testing::run_cli(POWERINFER2_CLI, "generate" + m + " --device auto --gpu-memory lots").exit_code == 2);
}
