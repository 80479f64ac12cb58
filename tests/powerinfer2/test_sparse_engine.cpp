// The sparse engine against the dense engine (the oracle): the converted file's bundles hold
// exactly the model's FFN, and sparse decoding with the exact active sets gives the dense
// engine's logits at every memory budget, with and without the pipeline, through io_uring
// and the pread pool; profiling keeps the output while it sorts neurons; trained predictors
// reach their recall on text they were not trained on; bad input fails with one line.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <numeric>
#include <random>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "model/forward.hpp"
#include "model/model.hpp"
#include "engine/runtime.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "json_text.hpp"
#include "model_maker.hpp"
#include "ops/neuron_ops.hpp"
#include "recall_bound.hpp"
#include "reference_decode.hpp"
#include "model/pi2_model.hpp"
#include "prep/pi2_writer.hpp"
#include "prep/profile.hpp"
#include "sparse/sparse_ffn.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
namespace eng = powerinfer2::engine;
namespace mdl = powerinfer2::model;
namespace mm = powerinfer2::tools;
namespace sp = powerinfer2::sparse;
namespace prep = powerinfer2::prep;

namespace {

std::string q(const std::filesystem::path& p) { return testing::shell_quote(p.string()); }

std::filesystem::path tiny_model(const testing::TempDir& dir, const std::string& name, io::GgmlType type,
                                 mdl::FfnActivation act, std::uint64_t seed = 7) {
  mm::MakeModelOptions o;
  o.shape = *mm::find_preset("tiny");
  o.type = type;
  o.activation = act;
  o.seed = seed;
  o.sparsity = act == mdl::FfnActivation::swiglu ? 0.0 : 0.9;
  common::ThreadPool pool(2);
  const std::filesystem::path p = dir / name;
  mm::make_model(o, p.string(), pool);
  return p;
}

void convert(const std::filesystem::path& in, const std::filesystem::path& out, std::size_t cluster) {
  const io::GgufFile src(in.string());
  prep::Pi2WriteSpec spec;
  spec.cluster_size = cluster;
  prep::write_pi2(src, mdl::load_config(src), spec, out.string());
}

std::vector<mdl::TokenId> some_tokens(std::size_t n, std::uint32_t vocab, std::uint64_t seed) {
  std::vector<mdl::TokenId> t(n);
  std::uint64_t s = seed;
  for (auto& v : t) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    v = static_cast<mdl::TokenId>((s >> 33) % vocab);
  }
  return t;
}

// Logits of prefill(prompt) then greedy decode of `steps` tokens: all of them, concatenated.
std::vector<float> run(mdl::Forward& f, std::span<const mdl::TokenId> prompt, std::size_t steps,
                       std::vector<mdl::TokenId>* out_tokens = nullptr) {
  std::vector<float> all;
  std::span<const float> lg = f.prefill(prompt, 0);
  all.insert(all.end(), lg.begin(), lg.end());
  std::size_t pos = prompt.size();
  for (std::size_t i = 0; i < steps; ++i) {
    const auto tok = static_cast<mdl::TokenId>(std::max_element(lg.begin(), lg.end()) - lg.begin());
    if (out_tokens) out_tokens->push_back(tok);
    lg = f.decode(tok, pos++);
    all.insert(all.end(), lg.begin(), lg.end());
  }
  return all;
}

// run() on the dense engine of the model at `path` (context 64).
std::vector<float> run_dense(const std::filesystem::path& path, std::span<const mdl::TokenId> prompt, std::size_t steps,
                             std::vector<mdl::TokenId>* out_tokens) {
  common::ThreadPool pool(2);
  const mdl::Model m(path.string(), &pool);
  mdl::Forward f(m, pool, 64);
  return run(f, prompt, steps, out_tokens);
}

double max_rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double mx = 0.0, scale = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    mx = std::max(mx, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
  }
  return mx / std::max(scale, 1e-30);
}

// The sparse figures of generate / bench --json, against each other and the process's wall
// time: the plan fits the budget, rates are shares, the stalls of at least `min_tokens`
// tokens fit in the run.
void check_sparse_json(const nlohmann::json& j, double min_tokens, double wall_s) {
  INFO(j.dump());
  const auto budget = j["memory_budget_bytes"].get<std::uint64_t>();
  CHECK(budget > 0);
  CHECK(j["fixed_bytes"].get<std::uint64_t>() + j["hot_bytes"].get<std::uint64_t>() +
            j["cold_bytes"].get<std::uint64_t>() + j["stream_bytes"].get<std::uint64_t>() <=
        budget);
  CHECK(j["offload_ffn"].get<double>() >= 0.0);
  CHECK(j["offload_ffn"].get<double>() <= 1.0);
  // Reads exactly when part of the FFN is on storage.
  CHECK((j["bytes_read_per_token"].get<double>() > 0.0) == (j["offload_ffn"].get<double>() > 0.0));
  const double hit = j["cache_hit_rate"], hot = j["hot_hit_rate"], cold = j["cold_hit_rate"];
  for (double rate : {hit, hot, cold}) {
    CHECK(rate >= 0.0);
    CHECK(rate <= 1.0);
  }
  // Hits are hot hits, or cold hits among the rest.
  CHECK(hit == Approx(hot + (1.0 - hot) * cold).margin(1e-12));
  CHECK(j["io_stall_ms_per_token"].get<double>() >= 0.0);
  CHECK(j["io_stall_ms_per_token"].get<double>() * min_tokens <= 1000.0 * wall_s);
  CHECK(j["neurons_computed_per_token"].get<double>() > 0.0);
  CHECK(j["predictor_precision"].get<double>() > 0.0);
  CHECK(j["predictor_precision"].get<double>() <= 1.0);
  CHECK(j["peak_rss_bytes"].get<double>() > 0.0);
}

}  // namespace

TEST_CASE("powerinfer2 sparse: bundle geometry keeps every cluster on 4 KiB boundaries", "[unit]") {
  for (auto type : {io::GgmlType::F32, io::GgmlType::F16, io::GgmlType::Q8_0, io::GgmlType::Q4_0})
    for (std::size_t n : {1, 2, 3, 4, 16, 32, 64}) {
      const mdl::BundleGeometry g = mdl::bundle_geometry(type, 4096, n * 448, n);
      CHECK(g.cluster_bytes() % io::kClusterAlign == 0);
      CHECK(g.stride >= 3 * g.part_bytes);
      CHECK(g.stride - 3 * g.part_bytes < io::kClusterAlign);
    }
  // Q4_0, dim 4096: 6912 bytes of parts; alone padded to 8 KiB (as PowerInfer-2 pads 7.5 KB
  // to 8 KB), in clusters of 16 no padding at all.
  CHECK(mdl::bundle_geometry(io::GgmlType::Q4_0, 4096, 14336, 1).stride == 8192);
  CHECK(mdl::bundle_geometry(io::GgmlType::Q4_0, 4096, 14336, 16).stride == 6912);
  CHECK_THROWS_AS(mdl::bundle_geometry(io::GgmlType::Q4_0, 4096, 14336, 5), common::UsageError);
}

TEST_CASE("powerinfer2 sparse: a bundle holds gate row, up row and down column of its neuron", "[unit]") {
  testing::TempDir dir;
  for (auto type : {io::GgmlType::F32, io::GgmlType::F16, io::GgmlType::Q8_0, io::GgmlType::Q4_0}) {
    const auto dense = tiny_model(dir, "m.gguf", type, mdl::FfnActivation::reglu);
    const auto conv = dir / "m.pi2.gguf";
    convert(dense, conv, 4);
    const io::GgufFile d(dense.string()), c(conv.string());
    const mdl::ModelConfig cfg = mdl::load_config(d);
    const mdl::ModelWeights w = mdl::load_weights(d, cfg);
    const mdl::Pi2Model m = mdl::load_pi2(c, cfg);
    REQUIRE(m.layers.size() == cfg.n_layer);
    std::vector<float> part(cfg.dim), ref(cfg.dim), down_row(cfg.ffn_dim);
    double worst_down = 0.0;
    for (std::size_t l = 0; l < cfg.n_layer; ++l) {
      CHECK(m.layers[l].bundles_offset % 4096 == 0);
      const auto& L = w.layers[l];
      for (std::size_t i : {std::size_t{0}, std::size_t{5}, std::size_t{cfg.ffn_dim - 1}}) {
        const std::uint8_t* b = m.layers[l].bundles.data() + i * m.geo.stride;
        // gate and up parts are the matrices' own bytes
        CHECK(std::memcmp(b, static_cast<const std::uint8_t*>(L.gate.data) + i * L.gate.row_bytes(), L.gate.row_bytes()) == 0);
        CHECK(std::memcmp(b + m.geo.up_offset(), static_cast<const std::uint8_t*>(L.up.data) + i * L.up.row_bytes(),
                          L.up.row_bytes()) == 0);
        // down column: exact for F32 / F16, re-quantized along dim for Q8_0 / Q4_0
        mdl::bundle_part_to_f32(m.geo, b, 2, part.data());
        io::GgufTensorView dv = d.tensor("blk." + std::to_string(l) + ".ffn_down.weight");
        for (std::size_t r = 0; r < cfg.dim; ++r) {
          mdl::bundle_part_to_f32(mdl::bundle_geometry(type, cfg.ffn_dim, 1, 1), dv.data.data() + r * L.down.row_bytes(), 0,
                                 down_row.data());
          ref[r] = down_row[i];
        }
        double scale = 0.0;
        for (float v : ref) scale = std::max(scale, static_cast<double>(std::fabs(v)));
        for (std::size_t r = 0; r < cfg.dim; ++r)
          worst_down = std::max(worst_down, std::fabs(part[r] - ref[r]) / std::max(scale, 1e-30));
        CHECK(m.layers[l].perm[i] == static_cast<std::int32_t>(i));
      }
    }
    INFO(io::ggml_type_name(type) << " worst relative down-column error " << worst_down);
    if (type == io::GgmlType::F32 || type == io::GgmlType::F16)
      CHECK(worst_down == 0.0);
    else
      CHECK(worst_down <= (type == io::GgmlType::Q8_0 ? 0.01 : 0.15));
  }
}

TEST_CASE("powerinfer2 sparse: neuron_axpy matches its reference on every bundle type", "[unit]") {
  // Both the kernel and ops::ref (the same code without AVX-512) against y + a w in double,
  // with w decoded from the bundle's bytes in the test. Float rounding: the scaled weight
  // (a d for the blocks), the product and the sum each round once, so the error stays within
  // 3 ulp of |y| + |a w|: tolerance 4 eps (|y| + |a w|).
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto type : {io::GgmlType::F32, io::GgmlType::F16, io::GgmlType::Q8_0, io::GgmlType::Q4_0}) {
    const std::size_t n = 96;
    const mdl::BundleGeometry g = mdl::bundle_geometry(type, n, 1, 1);
    std::vector<float> src(n);
    for (std::size_t i = 0; i < n; ++i) src[i] = std::sin(static_cast<float>(i) * 0.7f) * 1.5f;
    std::vector<std::uint8_t> row(g.stride);
    // Make a bundle whose down part is src.
    std::vector<std::uint8_t> zeros(g.part_bytes * 2, 0);
    const powerinfer2::ops::WeightMatrix zm{type, zeros.data(), 1, n, powerinfer2::ops::WeightLayout::gguf};
    prep::make_bundle(g, zm, zm, src.data(), 0, row.data());
    std::vector<double> w(n);
    refdec::decode_row(type, row.data() + g.down_offset(), n, w.data());
    // The down part holds src (quantized for Q8_0 / Q4_0: within half a step of d, d = max |src| / 127 or / 8).
    const double step = type == io::GgmlType::Q4_0 ? 1.5 / 8 : type == io::GgmlType::Q8_0 ? 1.5 / 127 : 0.0;
    for (std::size_t i = 0; i < n; ++i) CHECK(std::abs(w[i] - src[i]) <= (type == io::GgmlType::F16 ? 1e-3 : step));

    const float a = -0.75f;
    std::vector<float> y0(n);
    for (float& v : y0) v = normal(rng);
    std::vector<float> y = y0, y_ref = y0;
    powerinfer2::ops::neuron_axpy(type, row.data() + g.down_offset(), a, y.data(), n);
    powerinfer2::ops::ref::neuron_axpy(type, row.data() + g.down_offset(), a, y_ref.data(), n);
    double worst = 0.0, worst_ref = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      const double want = static_cast<double>(y0[i]) + static_cast<double>(a) * w[i];
      const double scale = std::abs(static_cast<double>(y0[i])) + std::abs(static_cast<double>(a) * w[i]);
      const double eps = std::numeric_limits<float>::epsilon();
      worst = std::max(worst, std::abs(y[i] - want) / (eps * scale));
      worst_ref = std::max(worst_ref, std::abs(y_ref[i] - want) / (eps * scale));
    }
    WARN(io::ggml_type_name(type) << " neuron_axpy vs double: max error " << worst << " eps (kernel), " << worst_ref
                                  << " eps (ops::ref); tolerance 4");
    CHECK(worst <= 4.0);
    CHECK(worst_ref <= 4.0);
  }
}

TEST_CASE("powerinfer2 sparse: with the oracle predictor, sparse output equals dense output at every budget", "[unit]") {
  testing::TempDir dir;
  for (auto act : {mdl::FfnActivation::reglu, mdl::FfnActivation::drelu})
    for (auto type : {io::GgmlType::F32, io::GgmlType::Q8_0}) {
      const auto dense_path = tiny_model(dir, "d.gguf", type, act);
      const auto conv = dir / "d.pi2.gguf";
      convert(dense_path, conv, 4);
      const auto prompt = some_tokens(9, 512, 3);
      std::vector<mdl::TokenId> dense_tokens;
      const std::vector<float> dense_logits = run_dense(dense_path, prompt, 12, &dense_tokens);
      std::vector<float> unlimited;
      struct Case {
        const char* name;
        double offload;
        bool pipeline, cache;
        std::optional<io::ReadBackend> backend;
      };
      for (const Case& c : {Case{"unlimited", 0.0, true, true, {}}, Case{"50% offloaded", 0.5, true, true, {}},
                            Case{"all offloaded", 1.0, true, true, {}},
                            Case{"90% no pipeline", 0.9, false, true, {}}, Case{"90% no cold cache", 0.9, true, false, {}},
                            Case{"75% pread pool", 0.75, true, true, io::ReadBackend::pread_pool}}) {
        eng::RuntimeOptions o;
        o.n_ctx = 64;
        o.sparse.oracle = true;
        o.sparse.pipeline = c.pipeline;
        o.sparse.cold_cache = c.cache;
        o.sparse.backend = c.backend;
        if (c.offload > 0.0) o.sparse.budget.offload_ffn = c.offload;
        eng::Runtime rt(conv.string(), o);
        std::vector<mdl::TokenId> tokens;
        const std::vector<float> logits = run(rt.forward, prompt, 12, &tokens);
        const double d = max_rel_diff(dense_logits, logits);
        INFO(mdl::activation_name(act) << " " << io::ggml_type_name(type) << " " << c.name << ": max |dlogit| / max |logit| = "
                                       << d << ", read " << rt.sparse->stats().bytes_read << " bytes");
        CHECK(tokens == dense_tokens);
        // F32: only summation order differs; Q8_0: the down columns are re-quantized along dim.
        CHECK(d <= (type == io::GgmlType::F32 ? 1e-4 : 0.03));
        if (c.offload > 0.0) CHECK(rt.sparse->stats().bytes_read > 0);
        // A tight budget changes nothing but the order in which threads add clusters up (the
        // order reads complete in); for Q8_0 a last-bit difference can move the next layer's
        // quantized activations by one step.
        if (unlimited.empty())
          unlimited = logits;
        else
          CHECK(max_rel_diff(unlimited, logits) <= (type == io::GgmlType::F32 ? 1e-5 : 2e-3));
      }
    }
}

TEST_CASE("powerinfer2 sparse: a streamed cluster with few predicted neurons reads only their pages", "[unit]") {
  // dim 256 in F32: 3 KiB bundles, clusters of 4 span three 4 KiB pages, so one neuron's
  // bundle needs one or two of them.
  testing::TempDir dir;
  mm::MakeModelOptions mo;
  mo.shape = *mm::find_preset("tiny");
  mo.shape.dim = 256;
  mo.shape.ffn_dim = 512;
  mo.type = io::GgmlType::F32;
  mo.activation = mdl::FfnActivation::drelu;
  mo.sparsity = 0.9;
  mo.seed = 5;
  const auto dense_path = dir / "w.gguf";
  {
    common::ThreadPool pool(2);
    mm::make_model(mo, dense_path.string(), pool);
  }
  const auto conv = dir / "w.pi2.gguf";
  convert(dense_path, conv, 4);
  const auto prompt = some_tokens(7, 512, 9);
  std::vector<mdl::TokenId> dense_tokens;
  const std::vector<float> dense_logits = run_dense(dense_path, prompt, 10, &dense_tokens);
  for (const bool cold_cache : {false, true}) {
    eng::RuntimeOptions o;
    o.n_ctx = 64;
    o.sparse.oracle = true;
    o.sparse.cold_cache = cold_cache;  // no cold slots: misses are streamed, read in part
    o.sparse.budget.offload_ffn = 0.75;
    eng::Runtime rt(conv.string(), o);
    REQUIRE(rt.sparse->plan().stream > 0);
    std::vector<mdl::TokenId> tokens;
    const std::vector<float> logits = run(rt.forward, prompt, 10, &tokens);
    const sp::SparseStats& st = rt.sparse->stats();
    const std::uint64_t cb = rt.model.pi2->geo.cluster_bytes();
    INFO("cold cache " << cold_cache << ": max rel diff " << max_rel_diff(dense_logits, logits) << ", " << st.misses
                       << " misses, " << st.bytes_read << " bytes read (whole clusters: " << st.misses * cb << ")");
    CHECK(cb == 3 * 4096);
    CHECK(tokens == dense_tokens);
    CHECK(max_rel_diff(dense_logits, logits) <= 1e-4);
    REQUIRE(st.misses > 0);
    CHECK(st.bytes_read % 4096 == 0);
    // Prompts stream whole clusters; decode's streamed misses read only the pages they need.
    if (!cold_cache) CHECK(st.bytes_read < st.misses * cb);
  }
}

TEST_CASE("powerinfer2 sparse: profiling sorts neurons hottest first without changing the output", "[unit]") {
  testing::TempDir dir;
  const auto dense_path = tiny_model(dir, "d.gguf", io::GgmlType::F16, mdl::FfnActivation::drelu, 11);
  const auto conv = dir / "d.pi2.gguf";
  common::ThreadPool pool(2);
  const mdl::Model dense(dense_path.string(), &pool);
  const auto text = some_tokens(600, 512, 5);
  const prep::ActivationRecord rec = prep::record_activations(dense, pool, text, 128, 0);
  CHECK(rec.tokens == 600);
  prep::Pi2WriteSpec spec;
  spec.cluster_size = 8;
  spec.profiled_tokens = rec.tokens;
  for (std::size_t l = 0; l < dense.config.n_layer; ++l) {
    spec.order.push_back(prep::hotness_order(rec.fired[l]));
    std::vector<float> f(dense.config.ffn_dim);
    for (std::size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(rec.fired[l][i]) / 600.0f;
    spec.freq.push_back(f);
  }
  prep::write_pi2(dense.file, dense.config, spec, conv.string(), &pool);
  const io::GgufFile c(conv.string());
  const mdl::Pi2Model m = mdl::load_pi2(c, dense.config);
  CHECK(m.profiled_tokens == 600);
  double mean_active = 0.0;
  for (std::size_t l = 0; l < m.layers.size(); ++l) {
    const auto& fr = m.layers[l].freq;
    CHECK(std::is_sorted(fr.begin(), fr.end(), std::greater<float>()));
    CHECK(fr.front() > fr.back());
    for (std::size_t p = 0; p < fr.size(); ++p)
      CHECK(fr[p] == static_cast<float>(rec.fired[l][static_cast<std::size_t>(m.layers[l].perm[p])]) / 600.0f);
    mean_active += std::accumulate(fr.begin(), fr.end(), 0.0) / static_cast<double>(fr.size());
  }
  mean_active /= static_cast<double>(m.layers.size());
  CHECK(mean_active > 0.05);
  CHECK(mean_active < 0.2);
  // Same greedy tokens as the dense engine, and the hot segment now catches most clusters.
  const auto prompt = some_tokens(7, 512, 9);
  std::vector<mdl::TokenId> want, got;
  {
    mdl::Forward f(dense, pool, 64);
    run(f, prompt, 10, &want);
  }
  eng::RuntimeOptions o;
  o.n_ctx = 64;
  o.sparse.oracle = true;
  o.sparse.budget.offload_ffn = 0.6;
  eng::Runtime rt(conv.string(), o);
  run(rt.forward, prompt, 10, &got);
  CHECK(got == want);
  const sp::SparseStats& s = rt.sparse->stats();
  const double hot = static_cast<double>(s.hot_hits) / static_cast<double>(s.hot_hits + s.cold_hits + s.misses);
  INFO("hot-segment hit rate with 40% of the FFN resident: " << hot);
  CHECK(hot > 0.5);
}

TEST_CASE("powerinfer2 sparse: trained predictors reach their recall on unseen tokens", "[unit]") {
  // The fit calibrates its margin until the recall on its own held-out split reaches the
  // target (0.99), so the reports' recall proves nothing: the recall is measured by the
  // runtime on fresh tokens of the same process (uniform random tokens, another seed),
  // against recall_bound.hpp's bound.
  testing::TempDir dir;
  const prep::PredictorFitOptions fit;
  for (auto act : {mdl::FfnActivation::reglu, mdl::FfnActivation::drelu}) {
    const auto dense_path = tiny_model(dir, "d.gguf", io::GgmlType::F32, act, 21);
    const auto conv = dir / "d.pi2.gguf";
    convert(dense_path, conv, 4);
    common::ThreadPool pool(2);
    double heldout_firings = 0.0;
    {
      const mdl::Model dense(dense_path.string(), &pool);
      constexpr std::size_t kKept = 768;
      const prep::ActivationRecord rec = prep::record_activations(dense, pool, some_tokens(1024, 512, 1), 256, kKept);
      const io::GgufFile c(conv.string());
      const mdl::Pi2Model m = mdl::load_pi2(c, dense.config);
      std::vector<std::vector<std::int32_t>> perm;
      for (const auto& L : m.layers) perm.emplace_back(L.perm.begin(), L.perm.end());
      std::vector<prep::LayerFitReport> reports;
      prep::Pi2WriteSpec spec;
      spec.predictors = prep::train_predictors(dense, pool, rec, perm, fit, reports);
      std::size_t n_holdout = 0;
      for (std::size_t i = 0; i < kKept; ++i) n_holdout += prep::is_holdout(i, fit.holdout);
      for (const auto& r : reports) {
        CHECK(r.precision > r.true_fraction * 2.0);  // far better than guessing
        CHECK(r.rank <= 16);
        heldout_firings += r.true_fraction * static_cast<double>(n_holdout * dense.config.ffn_dim);
      }
      prep::write_pi2(c, dense.config, spec, conv.string(), &pool);
    }
    eng::RuntimeOptions o;
    o.n_ctx = 128;
    o.sparse.measure_recall = true;
    o.sparse.budget.offload_ffn = 0.5;
    eng::Runtime rt(conv.string(), o);
    REQUIRE(rt.model.pi2->has_predictor());
    const std::vector<mdl::TokenId> fresh = some_tokens(o.n_ctx, 512, 2);
    const sp::SparseStats& s = rt.sparse->stats();
    recall_bound::Samples per_token;
    for (std::size_t pos = 0; pos < fresh.size(); ++pos) {
      const std::uint64_t fired = s.true_neurons, found = s.found_neurons;
      rt.forward.decode(fresh[pos], pos);
      per_token.add(static_cast<double>(s.true_neurons - fired), static_cast<double>(s.found_neurons - found));
    }
    REQUIRE(s.sparse_tokens == fresh.size());
    const double recall = static_cast<double>(s.found_neurons) / static_cast<double>(s.true_neurons);
    const double bound = recall_bound::bound(fit.target_recall, heldout_firings, per_token);
    const double computed = static_cast<double>(s.predicted_neurons) /
                            static_cast<double>(s.sparse_tokens * rt.model.config.n_layer * rt.model.config.ffn_dim);
    WARN(mdl::activation_name(act) << ": recall " << recall << " on " << fresh.size() << " fresh tokens (bound "
                                   << bound << ", " << s.true_neurons << " firings, design effect "
                                   << per_token.design_effect() << "), " << computed
                                   << " of the neurons computed per token");
    CHECK(recall >= bound);
    CHECK(computed < 0.3);
  }
}

TEST_CASE("powerinfer2 sparse: memory plans and refusals", "[unit]") {
  testing::TempDir dir;
  const auto dense_path = tiny_model(dir, "d.gguf", io::GgmlType::Q4_0, mdl::FfnActivation::reglu);
  const auto conv = dir / "d.pi2.gguf";
  convert(dense_path, conv, 8);
  const io::GgufFile f(conv.string());
  const mdl::Pi2Model m = mdl::load_pi2(f, mdl::load_config(f));
  sp::SparseOptions o;
  o.budget.bytes = 1000000 + m.geo.layer_bytes() + m.ffn_bytes() / 2;
  const sp::MemoryPlan p = sp::plan_memory(m, 1000000, o);
  CHECK(p.fixed + p.stream + p.hot + p.cold <= *o.budget.bytes);
  CHECK(p.hot + p.cold + m.geo.cluster_bytes() > m.ffn_bytes() / 2);
  CHECK(p.offloaded_fraction() == Approx(0.5).margin(0.1));
  // A third of the clusters on the GPU: the host budget goes to the rest, and with the same
  // budget less of the FFN is left on storage.
  const std::size_t on_gpu = p.total_clusters / 3;
  const sp::MemoryPlan g = sp::plan_memory(m, 1000000, o, on_gpu);
  CHECK(g.gpu_clusters == on_gpu);
  CHECK(g.gpu == on_gpu * m.geo.cluster_bytes());
  CHECK(g.hot_clusters + g.cold_slots <= g.total_clusters - on_gpu);
  CHECK(g.fixed + g.stream + g.hot + g.cold <= *o.budget.bytes);
  CHECK(g.offloaded_fraction() < p.offloaded_fraction() - 0.2);
  // Everything but what the GPU holds fits: nothing is streamed.
  sp::SparseOptions roomy = o;
  roomy.budget.bytes = 1000000 + m.ffn_bytes() - g.gpu;
  const sp::MemoryPlan rp = sp::plan_memory(m, 1000000, roomy, on_gpu);
  CHECK(rp.stream == 0);
  CHECK(rp.hot_clusters == rp.total_clusters - on_gpu);
  CHECK(rp.offloaded_fraction() == Approx(0.0).margin(1e-9));
  o.budget.bytes = 1000000;
  try {
    (void)sp::plan_memory(m, 1000000, o);
    FAIL("a budget below the fixed segment must be refused");
  } catch (const common::UsageError& e) {
    CHECK(std::string(e.what()).find("fixed segment needs") != std::string::npos);
  }

  const std::string cli = POWERINFER2_CLI;
  auto one_line_error = [&](const std::string& args, const std::string& needle) {
    const testing::CommandResult r = testing::run_cli(cli, args);
    INFO(args << "\n" << r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2);
  };
  one_line_error("generate -m " + q(conv) + " -p hi -n 2 --memory-budget 64KiB", "fixed segment needs");
  one_line_error("generate -m " + q(dense_path) + " -p hi -n 2 --offload-ffn 0.5", "is a dense model");
  one_line_error("generate -m " + q(conv) + " -p hi -n 2 --mode sparse", "has no activation predictor");
  one_line_error("convert -m " + q(dense_path) + " -o " + q(dir / "x.pi2.gguf") + " --cluster-size 5", "does not divide");
  CHECK_FALSE(std::filesystem::exists(dir / "x.pi2.gguf"));
  const auto swiglu = tiny_model(dir, "s.gguf", io::GgmlType::F32, mdl::FfnActivation::swiglu);
  one_line_error("convert -m " + q(swiglu) + " -o " + q(dir / "y.pi2.gguf"), "never sparse");
  one_line_error("train-predictor -m " + q(conv) + " -f " + q(dense_path) + " -o " + q(dir / "z.pi2.gguf"),
                 "already converted");
}

TEST_CASE("powerinfer2 sparse: a converted file whose neuron order is not a permutation is refused", "[unit]") {
  testing::TempDir dir;
  const auto dense_path = tiny_model(dir, "d.gguf", io::GgmlType::F32, mdl::FfnActivation::reglu);
  const auto conv = dir / "d.pi2.gguf";
  convert(dense_path, conv, 4);
  std::uint64_t off = 0;
  {
    const io::GgufFile f(conv.string());
    off = f.tensor("blk.1.ffn_perm").file_offset;
  }
  {
    std::fstream s(conv, std::ios::in | std::ios::out | std::ios::binary);
    s.seekp(static_cast<std::streamoff>(off + 4));
    const std::int32_t zero = 0;  // perm[1] = 0 duplicates perm[0]
    s.write(reinterpret_cast<const char*>(&zero), 4);
  }
  const testing::CommandResult r = testing::run_cli(POWERINFER2_CLI, "generate -m " + q(conv) + " -p hi -n 1");
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("blk.1.ffn_perm is not a permutation") != std::string::npos);
}

TEST_CASE("powerinfer2 sparse: gguf-py lists the converted file, its clusters are 4 KiB aligned and hold the model's rows", "[golden]") {
  const std::string python = PWPI_PYTHON_GGUF;
  if (python.empty()) PWPI_SKIP("python gguf package not installed");
  testing::TempDir dir;
  const auto dense = tiny_model(dir, "d.gguf", io::GgmlType::Q4_0, mdl::FfnActivation::drelu);
  const auto conv = dir / "d.pi2.gguf";
  convert(dense, conv, 8);
  // inspect --json against the reference reader, tensor by tensor, key by key.
  const testing::CommandResult ref = testing::run_command(
      testing::shell_quote(python) + " " + q(testing::source_dir() / "tests/powerinfer2/check_gguf_reference.py") +
      " --cli " + q(POWERINFER2_CLI) + " " + q(conv));
  INFO(ref.out << ref.err);
  CHECK(ref.exit_code == 0);
  testing::write_text(dir / "check.py", R"PY(
import sys
import numpy as np
from gguf import GGUFReader
d, c = GGUFReader(sys.argv[1]), GGUFReader(sys.argv[2])
dt = {t.name: t for t in d.tensors}
kv = {f.name: f for f in c.fields.values()}
def u32(k): return int(kv[k].parts[kv[k].data[0]][0])
stride, cluster = u32("powerinfer2.pi2.bundle_stride"), u32("powerinfer2.pi2.cluster_size")
assert u32("general.alignment") == 4096 and (stride * cluster) % 4096 == 0, (stride, cluster)
n = 0
for t in c.tensors:
    if not t.name.endswith(".ffn_bundles"):
        continue
    assert t.tensor_type.name == "I8" and t.data_offset % 4096 == 0, (t.name, t.tensor_type, t.data_offset)
    b = np.asarray(t.data, dtype=np.int8).view(np.uint8).reshape(-1, stride)
    layer = t.name.split(".")[1]
    gate = np.asarray(dt[f"blk.{layer}.ffn_gate.weight"].data).view(np.uint8).reshape(b.shape[0], -1)
    up = np.asarray(dt[f"blk.{layer}.ffn_up.weight"].data).view(np.uint8).reshape(b.shape[0], -1)
    w = gate.shape[1]
    assert (b[:, :w] == gate).all() and (b[:, w:2 * w] == up).all(), t.name
    assert (b[:, 3 * w:] == 0).all(), t.name
    n += 1
assert n == 3, n
print("ok", n, stride, cluster)
)PY");
  const testing::CommandResult r =
      testing::run_command(testing::shell_quote(python) + " " + q(dir / "check.py") + " " + q(dense) + " " + q(conv));
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("ok 3") != std::string::npos);
}

TEST_CASE("powerinfer2 sparse: convert, profile-activations, train-predictor, plan, generate and bench from the CLI", "[unit]") {
  testing::TempDir dir;
  const auto dense = tiny_model(dir, "d.gguf", io::GgmlType::Q8_0, mdl::FfnActivation::reglu, 31);
  const auto conv = dir / "d.pi2.gguf";
  const std::string cli = POWERINFER2_CLI;
  auto ok = [&](const std::string& args) {
    const testing::CommandResult r = testing::run_cli(cli, args);
    INFO(args << "\n" << r.out << r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };
  ok("convert -m " + q(dense) + " -o " + q(conv) + " --cluster-size 4");
  CHECK(ok("profile-activations -m " + q(dense) + " --random-tokens 512 --window 128 -o " + q(conv))
            .find("profiled 512 tokens") != std::string::npos);
  const std::string train = ok("train-predictor -m " + q(dense) + " --random-tokens 768 --samples 512 -o " + q(conv));
  // The stored recall is the fit's held-out figure (the target by construction): the line
  // only. The recall on fresh tokens is measured below (predictor_recall).
  CHECK(train.find("predictors stored: mean recall ") != std::string::npos);

  // generate --json: the values of the run, the plain run's text, a plan within its budget.
  const std::string gen_args = "generate -m " + q(conv) + " -p \"Hello world\" -n 8 --offload-ffn 0.5 --measure-recall";
  common::Stopwatch wall;
  const auto gen = nlohmann::json::parse(ok(gen_args + " --json"));
  const double gen_wall_ms = wall.elapsed_ms();
  CHECK(as_json_text(ok(gen_args)) == gen["text"].get<std::string>() + "\n");
  CHECK(gen["generated_tokens"] == gen["tokens"].size());
  CHECK(gen["generated_tokens"].get<int>() >= 1);
  CHECK(gen["generated_tokens"].get<int>() <= 8);
  CHECK(gen["device"] == "cpu");
  CHECK(gen["sparse_decode"] == true);
  check_sparse_json(gen, gen["generated_tokens"].get<double>() - 1, gen_wall_ms / 1000.0);
  CHECK(gen["offload_ffn"].get<double>() == Approx(0.5).margin(0.15));
  // Generated text is not the random tokens the predictors were trained on: a loose bound.
  CHECK(gen["predictor_recall"].get<double>() >= 0.95);
  CHECK(gen["predictor_recall"].get<double>() <= 1.0);
  CHECK(gen["prefill_tok_s"].get<double>() > 0.0);
  CHECK(gen["decode_tok_s"].get<double>() > 0.0);
  CHECK(1000.0 * gen["prompt_tokens"].get<double>() / gen["prefill_tok_s"].get<double>() <= gen["ttft_ms"].get<double>());

  wall.reset();
  const auto bench = nlohmann::json::parse(ok("bench -m " + q(conv) + " -p 8 -n 8 -r 1 --memory-budget 512MiB --json"));
  const double bench_wall_s = wall.elapsed_s();
  CHECK(bench["memory_budget_bytes"].get<std::uint64_t>() == 512u << 20);
  CHECK(bench["n_prompt"] == 8);
  CHECK(bench["n_gen"] == 8);
  CHECK(bench["reps"] == 1);
  check_sparse_json(bench, 8, bench_wall_s);
  const double pp = bench["prefill_tok_s"], tg = bench["decode_tok_s"];
  CHECK(pp > 0.0);
  CHECK(tg > 0.0);
  CHECK(8 / pp + 8 / tg <= bench_wall_s);
  CHECK_FALSE(bench.contains("predictor_recall"));  // not asked for
  const std::string plan = ok("plan -m " + q(conv) + " --offload-ffn 0.5 -o " + q(dir / "plan.json") + " --trial-tokens 2");
  CHECK(plan.find("recommended") != std::string::npos);
  const auto pj = nlohmann::json::parse(common::read_file((dir / "plan.json").string()));
  CHECK(pj["trials"].size() == 8);
  ok("generate -m " + q(conv) + " -p hi -n 4 --plan " + q(dir / "plan.json"));
  const testing::CommandResult none = testing::run_cli(cli, "profile-activations -m " + q(dense) + " -o " + q(dir / "n.pi2.gguf"));
  CHECK(none.exit_code != 0);
  CHECK(none.err.find("give one of -f TEXT and --random-tokens N") != std::string::npos);
}

TEST_CASE("powerinfer2 sparse: PowerInfer's own fc1/fc2 predictor (PWRI file) is taken over by convert and run as a ReLU MLP", "[unit]") {
  testing::TempDir dir;
  const auto dense_path = tiny_model(dir, "d.gguf", io::GgmlType::F32, mdl::FfnActivation::reglu, 41);
  const io::GgufFile d(dense_path.string());
  const mdl::ModelConfig c = mdl::load_config(d);
  const std::size_t r = 8, dim = c.dim, ffn = c.ffn_dim;
  // A linear predictor W2 (W1 x) > 0 and the same as a ReLU MLP: fc1 = [W1; -W1],
  // fc2 = [W2, -W2], since relu(a) - relu(-a) = a.
  std::vector<prep::PredictorTensors> linear(c.n_layer);
  io::GgufWriter pw;
  pw.set_kind(io::GgufKind::powerinfer);
  for (const auto& kv : d.metadata()) pw.set(kv.key, kv.value);
  pw.set("powerinfer.sparse_threshold", 0.0f);
  for (const auto& t : d.tensor_infos()) {
    const auto v = d.tensor(t.name);
    pw.add_tensor(t.name, t.type, std::vector<std::uint64_t>(v.shape.begin(), v.shape.end()), v.data);
  }
  std::vector<std::vector<float>> fc1s(c.n_layer), fc2s(c.n_layer);
  std::uint64_t s = 99;
  auto rnd = [&] {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(static_cast<double>(s >> 40) / static_cast<double>(1ull << 24) - 0.5);
  };
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    prep::PredictorTensors& P = linear[l];
    P.rank = r;
    P.w1.resize(r * dim);
    for (float& v : P.w1) v = rnd();
    P.gate_w2.resize(ffn * r);
    for (float& v : P.gate_w2) v = rnd();
    P.gate_bias.assign(ffn, 0.0f);
    std::vector<float>& f1 = fc1s[l];
    std::vector<float>& f2 = fc2s[l];
    f1.resize(2 * r * dim);
    for (std::size_t i = 0; i < r * dim; ++i) {
      f1[i] = P.w1[i];
      f1[r * dim + i] = -P.w1[i];
    }
    f2.resize(ffn * 2 * r);
    for (std::size_t n = 0; n < ffn; ++n)
      for (std::size_t k = 0; k < r; ++k) {
        f2[n * 2 * r + k] = P.gate_w2[n * r + k];
        f2[n * 2 * r + r + k] = -P.gate_w2[n * r + k];
      }
    pw.add_tensor_f32("blk." + std::to_string(l) + ".fc1.weight", {dim, 2 * r}, f1);
    pw.add_tensor_f32("blk." + std::to_string(l) + ".fc2.weight", {2 * r, ffn}, f2);
  }
  pw.write((dir / "p.gguf").string());
  convert(dir / "p.gguf", dir / "p.pi2.gguf", 4);
  {
    prep::Pi2WriteSpec spec;
    spec.cluster_size = 4;
    spec.predictors = linear;
    prep::write_pi2(d, c, spec, (dir / "l.pi2.gguf").string());
  }
  const io::GgufFile pf((dir / "p.pi2.gguf").string());
  CHECK(pf.get_string("powerinfer2.pi2.predictor_kind") == "relu-mlp");
  CHECK(mdl::load_pi2(pf, c).layers[1].predictor->rank() == 2 * r);
  std::uint64_t counts[2];
  std::vector<float> logits[2];
  int k = 0;
  for (const char* name : {"p.pi2.gguf", "l.pi2.gguf"}) {
    eng::RuntimeOptions o;
    o.n_ctx = 64;
    o.sparse.mode = sp::EngineMode::sparse;
    eng::Runtime rt((dir / name).string(), o);
    logits[k] = run(rt.forward, some_tokens(6, 512, 5), 8);
    counts[k] = rt.sparse->stats().predicted_neurons;
    ++k;
  }
  INFO("neurons computed: relu-mlp " << counts[0] << ", linear " << counts[1]);
  CHECK(counts[0] > 0);
  CHECK(std::fabs(static_cast<double>(counts[0]) - static_cast<double>(counts[1])) <= 0.002 * static_cast<double>(counts[1]));
  CHECK(max_rel_diff(logits[1], logits[0]) <= 1e-3);
}
