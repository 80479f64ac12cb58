#include "prep/planner.hpp"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"
#include "common/json_io.hpp"
#include "common/timer.hpp"
#include "engine/runtime.hpp"
#include "io/flash_reader.hpp"
#include "ops/neuron_ops.hpp"

namespace powerinfer2::prep {

namespace {

// Bandwidth at `bytes` per request and queue depth `qd`, from the measured points (nearest
// request size at that depth, scaled linearly in request size below the smallest).
double bandwidth_at(const std::vector<ReadPoint>& pts, std::size_t bytes, unsigned qd) {
  const ReadPoint* best = nullptr;
  for (const ReadPoint& p : pts)
    if (p.queue_depth == qd &&
        (best == nullptr || std::fabs(std::log(static_cast<double>(p.request_bytes) / static_cast<double>(bytes))) <
                                std::fabs(std::log(static_cast<double>(best->request_bytes) / static_cast<double>(bytes)))))
      best = &p;
  return best == nullptr ? 0.0 : best->bytes_per_s;
}

}  // namespace

Plan make_plan(const std::string& model_path, const PlanOptions& o) {
  Plan plan;
  plan.model = model_path;
  plan.threads = o.threads;
  engine::RuntimeOptions ro;
  ro.threads = o.threads;
  ro.n_ctx = o.n_ctx;
  ro.sparse.budget = o.budget;
  ro.sparse.mode = sparse::EngineMode::sparse;

  // Storage: read bandwidth by request size and queue depth, random 4 KiB-aligned offsets
  // inside the model file (what cold cluster reads are).
  std::uint64_t fixed = 0;
  std::uint64_t budget = 0;
  // The mapping only (no repacking): the profile's views must outlive this function's work.
  const model::Model m(model_path, nullptr, /*repack=*/false);
  {
    if (!m.pi2) throw common::UsageError(model_path + " is not a converted sparse model", "run convert first");
    if (!m.pi2->has_predictor())
      throw common::UsageError(model_path + " has no activation predictor", "run train-predictor first");
    plan.cluster_size = m.pi2->geo.cluster_size;
    const engine::Runtime probe(model_path, ro);  // the engine's own plan of the budget
    fixed = probe.sparse->plan().fixed;
    budget = probe.sparse->plan().budget;
  }
  const model::Pi2Model& pi2 = *m.pi2;
  plan.memory_budget_bytes = budget;
  std::vector<std::size_t> sizes;
  const std::size_t ffn = pi2.geo.ffn;
  for (std::size_t n = 1; n <= 64; n *= 2)
    if (ffn % n == 0) sizes.push_back(model::bundle_geometry(pi2.geo.type, pi2.geo.dim, ffn, n).cluster_bytes());
  sizes.push_back(std::size_t{1} << 20);
  // Requests no larger than the file (a small model).
  const std::uint64_t file_bytes = m.file.file_size() / io::kDirectAlign * io::kDirectAlign;
  for (std::size_t& b : sizes) b = static_cast<std::size_t>(std::min<std::uint64_t>(b, file_bytes));
  std::sort(sizes.begin(), sizes.end());
  sizes.erase(std::unique(sizes.begin(), sizes.end()), sizes.end());
  for (unsigned qd : {1u, 8u, 32u})
    for (std::size_t bytes : sizes) {
      const io::ReadBandwidth bw =
          io::measure_read_bandwidth(model_path, bytes, qd, std::max<std::uint64_t>(o.read_bytes_per_point / (qd == 1 ? 4 : 1), bytes), true);
      plan.reads.push_back({bytes, qd, bw.bytes_per_s, bw.iops});
      plan.io_backend = std::string(io::backend_name(bw.backend));
    }

  // Memory bandwidth (all threads summing a 256 MiB buffer) and the per-bundle compute cost
  // (gate and up dot products and the down axpy of resident bundles, one thread).
  {
    common::ThreadPool pool(o.threads);
    const std::size_t n = (std::size_t{256} << 20) / sizeof(float);
    std::vector<float> buf(n, 1.0f);
    const std::size_t grain = n / (4 * pool.size());
    std::vector<float> sums(n / grain + 1, 0.0f);  // one per chunk: no two threads share one
    double best = 0.0;
    for (int rep = 0; rep < 3; ++rep) {
      common::Stopwatch sw;
      pool.parallel_for(0, n, grain, [&](std::size_t b, std::size_t e) {
        float acc = 0.0f;
        for (std::size_t i = b; i < e; ++i) acc += buf[i];
        sums[b / grain] = acc;
      });
      best = std::max(best, static_cast<double>(n * sizeof(float)) / sw.elapsed_s());
    }
    plan.memory_bytes_per_s = best;
    const model::BundleGeometry& g = pi2.geo;
    const std::size_t count = std::min<std::size_t>(g.ffn, 2048);
    std::vector<std::uint8_t> bundles(pi2.layers[0].bundles.begin(),
                                      pi2.layers[0].bundles.begin() + static_cast<std::ptrdiff_t>(count * g.stride));
    std::vector<float> x(g.dim, 0.5f), y(g.dim, 0.0f);
    std::vector<std::int8_t> xq(g.dim);
    std::vector<float> xd(g.dim / 32 + 1);
    std::vector<std::int32_t> xs(g.dim / 32 + 1);
    ops::quantize_act_q8(x.data(), g.dim, xq.data(), xd.data(), xs.data());
    const ops::NeuronInput in{x.data(), {xq.data(), xd.data(), xs.data(), nullptr, nullptr}};
    double best_ns = 1e30;
    for (int rep = 0; rep < 3; ++rep) {
      common::Stopwatch sw;
      float sink = 0.0f;
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint8_t* b = bundles.data() + i * g.stride;
        const float gv = ops::neuron_dot(g.type, b, in, g.dim);
        const float uv = ops::neuron_dot(g.type, b + g.up_offset(), in, g.dim);
        ops::neuron_axpy(g.type, b + g.down_offset(), gv * uv * 1e-6f, y.data(), g.dim);
        sink += gv;
      }
      best_ns = std::min(best_ns, sw.elapsed_s() * 1e9 / static_cast<double>(count));
      y[0] += sink * 0.0f;
    }
    plan.neuron_ns = best_ns;
  }

  // Cluster size: expected reads per token from the activation profile (a cluster is read
  // when any of its neurons fires and it is not resident; neurons independent), at the
  // bandwidth measured for that read size with 32 reads in flight.
  for (std::size_t n = 1; n <= 64; n *= 2) {
    if (ffn % n != 0) continue;
    const model::BundleGeometry g = model::bundle_geometry(pi2.geo.type, pi2.geo.dim, ffn, n);
    std::vector<double> p_active;
    for (const model::Pi2Layer& L : pi2.layers)
      for (std::size_t c = 0; c < ffn / n; ++c) {
        double none = 1.0;
        for (std::size_t i = c * n; i < (c + 1) * n; ++i) none *= 1.0 - std::clamp<double>(L.freq[i], 0.0, 1.0);
        p_active.push_back(1.0 - none);
      }
    std::sort(p_active.begin(), p_active.end(), std::greater<double>());
    const std::uint64_t stream = pi2.geo.layer_bytes();
    const std::uint64_t room = budget == 0 || budget <= fixed + stream ? (budget == 0 ? UINT64_MAX : 0) : budget - fixed - stream;
    const std::size_t resident = room == UINT64_MAX ? p_active.size() : std::min<std::size_t>(p_active.size(), room / g.cluster_bytes());
    double misses = 0.0;
    for (std::size_t k = resident; k < p_active.size(); ++k) misses += p_active[k];
    const double bw = bandwidth_at(plan.reads, g.cluster_bytes(), 32);
    plan.clusters.push_back({n, g.cluster_bytes(), misses, bw > 0 ? misses * static_cast<double>(g.cluster_bytes()) / bw * 1e3 : 0.0});
  }
  plan.recommended_cluster_size =
      std::min_element(plan.clusters.begin(), plan.clusters.end(), [](const ClusterChoice& a, const ClusterChoice& b) {
        return a.read_ms_per_token < b.read_ms_per_token;
      })->cluster_size;

  // Hot/cold split and queue depth: short decode runs of the engine itself.
  double best = -1.0;
  for (double hs : {0.5, 0.75, 0.9, 1.0})
    for (unsigned qd : {16u, 64u}) {
      engine::RuntimeOptions t = ro;
      t.sparse.hot_share = hs;
      t.sparse.queue_depth = qd;
      engine::Runtime rt(model_path, t);
      model::TokenId tok = 1;
      for (std::size_t i = 0; i < 2; ++i) rt.forward.decode(tok, i);  // warm-up
      common::Stopwatch sw;
      for (std::size_t i = 0; i < o.trial_tokens; ++i) {
        const std::span<const float> lg = rt.forward.decode(tok, 2 + i);
        tok = static_cast<model::TokenId>(std::max_element(lg.begin(), lg.end()) - lg.begin());
      }
      const double tok_s = static_cast<double>(o.trial_tokens) / sw.elapsed_s();
      plan.trials.push_back({hs, qd, tok_s});
      if (tok_s > best) {
        best = tok_s;
        plan.hot_share = hs;
        plan.queue_depth = qd;
      }
    }
  return plan;
}

std::string plan_to_json(const Plan& p) {
  nlohmann::ordered_json j;
  j["version"] = 1;
  j["model"] = p.model;
  j["memory_budget_bytes"] = p.memory_budget_bytes;
  j["threads"] = p.threads;
  j["hot_share"] = p.hot_share;
  j["queue_depth"] = p.queue_depth;
  j["cluster_size"] = p.cluster_size;
  j["recommended_cluster_size"] = p.recommended_cluster_size;
  j["io_backend"] = p.io_backend;
  j["memory_bytes_per_s"] = p.memory_bytes_per_s;
  j["neuron_ns"] = p.neuron_ns;
  for (const ReadPoint& r : p.reads)
    j["read_bandwidth"].push_back({{"request_bytes", r.request_bytes}, {"queue_depth", r.queue_depth},
                                   {"bytes_per_s", r.bytes_per_s}, {"iops", r.iops}});
  for (const ClusterChoice& c : p.clusters)
    j["cluster_sizes"].push_back({{"cluster_size", c.cluster_size}, {"cluster_bytes", c.cluster_bytes},
                                  {"misses_per_token", c.misses_per_token}, {"read_ms_per_token", c.read_ms_per_token}});
  for (const Trial& t : p.trials)
    j["trials"].push_back({{"hot_share", t.hot_share}, {"queue_depth", t.queue_depth}, {"decode_tok_s", t.decode_tok_s}});
  return j.dump(2) + "\n";
}

Plan load_plan(const std::string& path) {
  const common::Json doc = common::load_json_file(path);
  const common::JsonView root = common::json_root(doc, path);
  common::require_version(root, "powerinfer2 plan", 1, 1);
  Plan p;
  p.model = root.string_or("model", "");
  p.memory_budget_bytes = static_cast<std::uint64_t>(root.at("memory_budget_bytes").as_nonnegative_int());
  p.threads = static_cast<std::size_t>(root.at("threads").as_positive_int());
  p.hot_share = root.at("hot_share").as_number(0.0, 1.0);
  p.queue_depth = static_cast<unsigned>(root.at("queue_depth").as_int(1, 4096));
  p.cluster_size = static_cast<std::size_t>(root.int_or("cluster_size", 0));
  p.recommended_cluster_size = static_cast<std::size_t>(root.int_or("recommended_cluster_size", 0));
  return p;
}

}  // namespace powerinfer2::prep
