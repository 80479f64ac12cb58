#include "search/search.hpp"

#include <algorithm>
#include <atomic>
#include <array>
#include <map>

#include "common/errors.hpp"
#include "common/timer.hpp"
#include "search/packing.hpp"
#include "search/partition.hpp"
#include "search/weave.hpp"

namespace pipeweaver::search {

const char* to_string(Recompute r) {
  switch (r) {
    case Recompute::none: return "none";
    case Recompute::encoders: return "encoders";
    case Recompute::all: return "all";
    case Recompute::selective: return "selective";
  }
  return "?";
}

void set_recompute(std::vector<schedule::Chunk>& chunks, const spec::ModelSpec& model, Recompute r) {
  PWPI_CHECK(r != Recompute::selective);
  for (schedule::Chunk& c : chunks) {
    const int mi = model.find(c.module);
    c.recompute = r == Recompute::all ||
                  (r == Recompute::encoders && mi >= 0 &&
                   model.modules[static_cast<std::size_t>(mi)].kind == spec::ModuleKind::encoder);
  }
}

Recompute recompute_of(std::span<const schedule::Chunk> chunks, const spec::ModelSpec& model) {
  bool any = false, all = true, encoders = true;
  for (const schedule::Chunk& c : chunks) {
    const int mi = model.find(c.module);
    const bool enc = mi >= 0 && model.modules[static_cast<std::size_t>(mi)].kind == spec::ModuleKind::encoder;
    any = any || c.recompute;
    all = all && c.recompute;
    encoders = encoders && c.recompute == enc;
  }
  return !any ? Recompute::none : all ? Recompute::all : encoders ? Recompute::encoders : Recompute::selective;
}

struct Searcher::Worker {
  cost::CostModel model;  // recomputation comes from the chunks' flags
  Worker(const spec::ModelSpec& m, const spec::ClusterSpec& c, const cost::CostOptions& o, const cost::DeviceProfile* p)
      : model(m, c, o, p) {}
};

struct Searcher::Candidate {
  std::string method = "pipeweaver";
  std::string detail;
  std::vector<schedule::Chunk> chunks;  // placed
  std::vector<std::vector<std::int32_t>> packing;
  WeavePolicy policy;
  Recompute recompute = Recompute::none;  // encoders / all: set on every chunk; none: the chunks' own flags
  const schedule::Schedule* fixed = nullptr;  // a baseline's own schedule instead of weaving

  // Appends the pass order and the packing to the description.
  void finish_detail();
};

// What level 2 scored: the candidates, the same before their descriptions were finished
// (what variations start from), and their evaluations.
struct Searcher::Level {
  std::vector<Candidate> level;
  std::vector<Candidate> structural;
  std::vector<Evaluated> scored;
};

namespace {

std::string policy_text(const WeavePolicy& p) {
  std::string s = !p.split_backward ? "B whole" : p.w_bounded_by_memory ? "I/W split (W held within memory)" : "I/W split";
  s += p.forward == ForwardOrder::breadth ? ", breadth-first" : ", depth-first";
  return s;
}

// What the chunks' recomputation flags say, as a suffix of a candidate's description.
std::string recompute_text(std::span<const schedule::Chunk> chunks, Recompute r) {
  switch (r) {
    case Recompute::none: return "";
    case Recompute::encoders: return ", encoders recomputed";
    case Recompute::all: return ", full recomputation";
    case Recompute::selective: break;
  }
  const auto k = std::count_if(chunks.begin(), chunks.end(), [](const schedule::Chunk& c) { return c.recompute; });
  return ", recomputation on " + std::to_string(k) + " of " + std::to_string(chunks.size()) + " chunks";
}

std::string layout_text(const std::vector<schedule::Chunk>& chunks, Placement pl) {
  std::vector<std::pair<std::string, int>> per;
  for (const auto& c : chunks) {
    if (per.empty() || per.back().first != c.module) per.emplace_back(c.module, 0);
    ++per.back().second;
  }
  std::string s = std::to_string(chunks.size()) + " chunks (";
  for (std::size_t j = 0; j < per.size(); ++j) s += (j ? ", " : "") + per[j].first + " " + std::to_string(per[j].second);
  return s + "), " + (pl == Placement::looped ? "looped" : "V-shaped");
}

// Fitting candidates first, then the lower score, then the earlier candidate.
bool better(const Evaluated& a, std::size_t ia, const Evaluated& b, std::size_t ib) {
  if (a.fits() != b.fits()) return a.fits();
  if (a.score_ns() != b.score_ns()) return a.score_ns() < b.score_ns();
  return ia < ib;
}

// Indices of `v`, best first (stable).
std::vector<std::size_t> ranked(const std::vector<Evaluated>& v) {
  std::vector<std::size_t> order(v.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return better(v[a], a, v[b], b); });
  return order;
}

std::size_t best_index(const std::vector<Evaluated>& v) {
  std::size_t best = 0;
  for (std::size_t i = 1; i < v.size(); ++i)
    if (better(v[i], i, v[best], best)) best = i;
  return best;
}

// The pass orders tried: the first on every layout, all of them on the best layouts.
constexpr std::array<WeavePolicy, 4> kPolicies = {{{true, ForwardOrder::breadth, 0, false},
                                                   {true, ForwardOrder::depth, 0, false},
                                                   {false, ForwardOrder::breadth, 0, false},
                                                   {true, ForwardOrder::breadth, 0, true}}};

// A layout (chunks placed on ranks) and its predicted step time, before SEMU.
struct Structure {
  std::vector<schedule::Chunk> chunks;
  std::string text;
  double predicted = 0;
};

// Per module, the chunk counts tried: its share of V = p .. max_v p chunks in all, and
// whole laps of the ranks; sorted, each once.
std::vector<std::vector<std::int32_t>> chunk_count_options(const spec::ModelSpec& model,
                                                           std::span<const ModuleWeights> w, std::int32_t p,
                                                           std::int32_t max_v) {
  std::vector<std::vector<std::int32_t>> options(w.size());
  for (std::int32_t v = 1; v <= max_v; ++v) {
    std::int64_t layers = 0;
    for (const ModuleWeights& mw : w) layers += static_cast<std::int64_t>(mw.w.size());
    if (p * v > layers) break;
    const std::vector<std::int32_t> c = chunk_counts(model, w, p * v);
    for (std::size_t j = 0; j < w.size(); ++j) options[j].push_back(c[j]);
  }
  for (std::size_t j = 0; j < w.size(); ++j) {
    const auto L = static_cast<std::int32_t>(w[j].w.size());
    for (const std::int32_t k : {p / 2, p, 2 * p, 3 * p, 4 * p})
      if (k >= 1 && k <= L) options[j].push_back(k);
    std::sort(options[j].begin(), options[j].end());
    options[j].erase(std::unique(options[j].begin(), options[j].end()), options[j].end());
  }
  return options;
}

// A layout's predicted step time: the busiest rank's work, plus the fill/drain estimate of
// a pipeline of `total` chunks over `n_microbatches`.
double predicted_ns(const spec::ModelSpec& model, std::span<const ModuleWeights> w,
                    const std::vector<schedule::Chunk>& chunks, std::int32_t p, std::int32_t total,
                    std::size_t n_microbatches) {
  const std::vector<double> cw = chunk_weights(model, w, chunks);
  std::vector<double> per_rank(static_cast<std::size_t>(p), 0.0);
  double sum = 0;
  for (std::size_t c = 0; c < cw.size(); ++c) {
    per_rank[static_cast<std::size_t>(chunks[c].rank)] += cw[c];
    sum += cw[c];
  }
  const double busiest = *std::max_element(per_rank.begin(), per_rank.end());
  return busiest + sum / static_cast<double>(total) / static_cast<double>(n_microbatches) * static_cast<double>(p - 1);
}

// Levels 1 and 2 without SEMU: every module order x chunks per module x placement (each
// also re-balanced per rank), pre-ranked by the busiest rank's share of this batch's work
// plus a fill/drain estimate for `n_microbatches`; the best 12.
std::vector<Structure> ranked_structures(const spec::ModelSpec& model, const cost::Device& device,
                                         const cost::CostOptions& cost_options, const spec::Batch& batch,
                                         std::int32_t p, std::int32_t max_v, std::size_t n_microbatches) {
  std::vector<Structure> structures;
  const spec::Batch* one = &batch;
  // This batch's per-layer weights, costed once; each module order only permutes them.
  const std::vector<ModuleWeights> costed =
      module_weights(model, device, cost_options, std::span(one, 1), default_module_order(model));
  for (const std::vector<int>& order : module_orders(model)) {
    std::vector<ModuleWeights> w;
    for (const int mi : order)
      w.push_back(*std::find_if(costed.begin(), costed.end(), [&](const ModuleWeights& m) { return m.module == mi; }));
    const std::vector<std::vector<std::int32_t>> options = chunk_count_options(model, w, p, max_v);
    std::vector<std::size_t> pick(w.size(), 0);
    while (true) {
      std::vector<std::int32_t> counts(w.size());
      std::int32_t total = 0;
      for (std::size_t j = 0; j < w.size(); ++j) total += counts[j] = options[j][pick[j]];
      if (total >= p && total <= max_v * p) {
        const std::vector<schedule::Chunk> cut = balanced_partition(model, w, counts);
        for (const Placement pl : {Placement::looped, Placement::vshape})
          for (const bool rebalance : {false, true}) {
            if (total <= p && pl == Placement::vshape) continue;
            Structure st;
            st.chunks = cut;
            place(st.chunks, p, pl);
            if (rebalance) {  // the same chunks re-balanced per rank (a rank's chunks together)
              const std::vector<schedule::Chunk> plain = st.chunks;
              balance_ranks(model, w, st.chunks, p);
              if (st.chunks == plain) continue;
            }
            st.predicted = predicted_ns(model, w, st.chunks, p, total, n_microbatches);
            st.text = layout_text(st.chunks, pl) + (rebalance ? ", balanced per rank" : "");
            structures.push_back(std::move(st));
          }
      }
      std::size_t j = 0;
      for (; j < w.size(); ++j) {
        if (++pick[j] < options[j].size()) break;
        pick[j] = 0;
      }
      if (j == w.size()) break;
    }
  }
  std::stable_sort(structures.begin(), structures.end(),
                   [](const Structure& a, const Structure& b) { return a.predicted < b.predicted; });
  if (structures.size() > 12) structures.resize(12);
  return structures;
}

}  // namespace

void Searcher::Candidate::finish_detail() {
  detail += ", " + policy_text(policy) + ", balanced packing (" + std::to_string(packing.size()) + " microbatches)";
}

Searcher::Searcher(const spec::ModelSpec& model, const spec::ClusterSpec& cluster, cost::CostOptions options,
                   const cost::DeviceProfile* profile, std::span<const spec::Batch> trace, SearchOptions search)
    : model_(model),
      cluster_(cluster),
      options_(options),
      profile_(profile),
      opt_(search),
      pool_(static_cast<std::size_t>(std::max(1, search.threads))) {
  plan_ = plan_baselines(model, cluster, cost::Device::from(cluster.device, profile), options, trace,
                         opt_.baseline_chunks_per_rank, opt_.token_budget);
  for (std::size_t t = 0; t < pool_.size(); ++t) workers_.push_back(std::make_unique<Worker>(model, cluster, options, profile));
}

Searcher::~Searcher() = default;

SearchStats Searcher::stats() const {
  SearchStats s = stats_;
  for (const auto& w : workers_) {
    s.chunk_lookups += w->model.stats().chunk_lookups;
    s.chunk_hits += w->model.stats().chunk_hits;
  }
  return s;
}

std::int64_t Searcher::switch_ns(const std::vector<schedule::Chunk>& from, const std::vector<schedule::Chunk>& to) const {
  if (from.empty() || to.empty()) return 0;
  // rank of every (module, layer) before and after
  std::map<std::pair<std::string, std::int32_t>, std::int32_t> before;
  for (const auto& c : from)
    for (std::int32_t l = c.layer_begin; l < c.layer_end; ++l) before[{c.module, l}] = c.rank;
  const auto p = static_cast<std::size_t>(cluster_.pipeline_size);
  std::vector<double> send(p, 0.0), recv(p, 0.0);
  const std::int64_t dp = std::max<std::int64_t>(1, cluster_.data_parallel_size);
  for (const auto& c : to) {
    const int mi = model_.find(c.module);
    if (mi < 0) continue;
    const spec::Module& m = model_.modules[static_cast<std::size_t>(mi)];
    // Weights plus optimizer state (sharded under ZeRO-1); gradients are rebuilt by the next step.
    const double opt_bytes = static_cast<double>(options_.optimizer_bytes_per_param) / (options_.zero1 ? static_cast<double>(dp) : 1.0);
    const double per_param = static_cast<double>(model_.dtype_bytes) + opt_bytes;
    for (std::int32_t l = c.layer_begin; l < c.layer_end; ++l) {
      const auto it = before.find({c.module, l});
      if (it == before.end() || it->second == c.rank) continue;
      double params = static_cast<double>(m.layer_params());
      if (l == 0 || l + 1 == m.layers) params += static_cast<double>(m.extra_params()) / (m.layers == 1 ? 1.0 : 2.0);
      const spec::LinkSpec& link = cluster_.link(it->second, c.rank);
      const double secs = params * per_param / link.bandwidth_bytes_per_s;
      send[static_cast<std::size_t>(it->second)] += secs;
      recv[static_cast<std::size_t>(c.rank)] += secs;
    }
  }
  double worst = 0;
  for (std::size_t r = 0; r < p; ++r) worst = std::max({worst, send[r], recv[r]});
  return static_cast<std::int64_t>(worst * 1e9);
}

Evaluated Searcher::evaluate(Worker& w, Candidate& c, const spec::Batch& batch) {
  Evaluated e;
  e.method = c.method;
  if (c.fixed) {
    e.schedule = *c.fixed;
  } else {
    e.schedule.n_ranks = static_cast<std::int32_t>(cluster_.pipeline_size);
    e.schedule.n_microbatches = static_cast<std::int32_t>(c.packing.size());
    e.schedule.chunks = c.chunks;
    e.schedule.microbatch_samples = c.packing;
  }
  if (c.recompute != Recompute::none) set_recompute(e.schedule.chunks, model_, c.recompute);
  e.recompute = recompute_of(e.schedule.chunks, model_);
  e.detail = c.detail + recompute_text(e.schedule.chunks, e.recompute);
  const std::vector<cost::ChunkInfo> infos =
      cost::resolve_chunks(model_, e.schedule, common::Where("(search candidate)"), "");
  const cost::StepCosts costs = w.model.step_costs(e.schedule, infos, batch);
  if (!c.fixed) weave(e.schedule, costs, c.policy);
  e.result = semu::simulate(e.schedule, costs);
  e.stage_act_bytes.assign(static_cast<std::size_t>(costs.n_stages), 0);
  for (std::int32_t st = 0; st < costs.n_stages; ++st)
    for (std::int32_t mb = 0; mb < costs.n_microbatches; ++mb)
      e.stage_act_bytes[static_cast<std::size_t>(st)] =
          std::max(e.stage_act_bytes[static_cast<std::size_t>(st)], costs.act_bytes[costs.at(st, mb)]);
  return e;
}

std::vector<Evaluated> Searcher::evaluate_all(std::vector<Candidate>& cands, const spec::Batch& batch) {
  std::vector<Evaluated> out(cands.size());
  std::atomic<std::size_t> next{0};
  common::Stopwatch sw;
  pool_.run_on_all([&](std::size_t t) {
    Worker& w = *workers_[t];
    for (std::size_t i = next++; i < cands.size(); i = next++) out[i] = evaluate(w, cands[i], batch);
  });
  stats_.eval_seconds += sw.elapsed_s();
  stats_.candidates += static_cast<std::int64_t>(cands.size());
  return out;
}

cost::StepCosts Searcher::costs_of(const Evaluated& e, const spec::Batch& batch) {
  const std::vector<cost::ChunkInfo> infos = cost::resolve_chunks(model_, e.schedule, common::Where("(search result)"), "");
  return workers_[0]->model.step_costs(e.schedule, infos, batch);
}

semu::Result Searcher::replay(const Evaluated& e, const spec::Batch& batch) {
  return semu::simulate(e.schedule, costs_of(e, batch), {.record_timeline = true});
}

// One round of tuning moves from `seed` (scored as `eval`): layers off the two busiest
// ranks, recomputation switched on near capacity and off where memory is left.
std::vector<Searcher::Candidate> Searcher::tuning_moves(const Candidate& seed, const Evaluated& eval) const {
  const auto p = static_cast<std::int32_t>(cluster_.pipeline_size);
  const auto capacity = static_cast<std::int64_t>(cluster_.device.memory_bytes);
  const std::size_t n = seed.chunks.size();
  std::vector<Candidate> out;
  // Ranks by compute time, busiest first.
  std::vector<std::int32_t> ranks(static_cast<std::size_t>(p));
  for (std::int32_t r = 0; r < p; ++r) ranks[static_cast<std::size_t>(r)] = r;
  std::stable_sort(ranks.begin(), ranks.end(), [&](std::int32_t a, std::int32_t b) {
    return eval.result.busy_ns[static_cast<std::size_t>(a)] > eval.result.busy_ns[static_cast<std::size_t>(b)];
  });
  const auto busiest_two = [&](std::int32_t r) { return r == ranks[0] || (ranks.size() > 1 && r == ranks[1]); };
  // Layers: each chunk of the two busiest ranks gives a layer to a neighbour of its module
  // or to one of its module's chunks (same run of chunks) on the two least busy ranks
  // holding one.
  const auto& busy = eval.result.busy_ns;
  for (std::size_t j = 0; j < n; ++j) {
    const schedule::Chunk& c = seed.chunks[j];
    if (!busiest_two(c.rank) || c.layer_end - c.layer_begin < 2) continue;
    std::size_t lo = j, hi = j;  // the run of the module's chunks around j
    while (lo > 0 && seed.chunks[lo - 1].module == c.module) --lo;
    while (hi + 1 < n && seed.chunks[hi + 1].module == c.module) ++hi;
    std::vector<std::size_t> others;
    for (std::size_t b = lo; b <= hi; ++b)
      if (seed.chunks[b].rank != c.rank) others.push_back(b);
    std::stable_sort(others.begin(), others.end(), [&](std::size_t a, std::size_t b) {
      return busy[static_cast<std::size_t>(seed.chunks[a].rank)] < busy[static_cast<std::size_t>(seed.chunks[b].rank)];
    });
    if (others.size() > 2) others.resize(2);
    for (std::size_t b = lo; b <= hi; ++b) {
      const bool idle = std::find(others.begin(), others.end(), b) != others.end();
      if (b == j || (b + 1 != j && j + 1 != b && !idle)) continue;
      Candidate m = seed;
      move_layer(m.chunks, j, b);
      out.push_back(std::move(m));
    }
  }
  // Recomputation: on for the chunk keeping the most activations on each of the two
  // ranks nearest their capacity (above 85%), and on every rank above it at once; off
  // for the smallest recomputed chunk on each of the two ranks furthest from it.
  std::vector<std::int32_t> by_mem(static_cast<std::size_t>(p));
  for (std::int32_t r = 0; r < p; ++r) by_mem[static_cast<std::size_t>(r)] = r;
  const auto& peak = eval.result.peak_mem_bytes;
  std::stable_sort(by_mem.begin(), by_mem.end(), [&](std::int32_t a, std::int32_t b) {
    return peak[static_cast<std::size_t>(a)] > peak[static_cast<std::size_t>(b)];
  });
  const auto largest_kept = [&](std::int32_t r) {  // the chunk on r keeping the most, or n
    std::size_t pick = n;
    for (std::size_t j = 0; j < n; ++j)
      if (seed.chunks[j].rank == r && !seed.chunks[j].recompute &&
          (pick == n || eval.stage_act_bytes[j] > eval.stage_act_bytes[pick]))
        pick = j;
    return pick;
  };
  if (opt_.allow_recompute) {
    for (std::size_t i = 0; i < std::min<std::size_t>(2, by_mem.size()); ++i) {
      const std::int32_t r = by_mem[i];
      if (static_cast<double>(peak[static_cast<std::size_t>(r)]) < 0.85 * static_cast<double>(capacity)) break;
      const std::size_t pick = largest_kept(r);
      if (pick == n) continue;
      Candidate m = seed;
      m.chunks[pick].recompute = true;
      out.push_back(std::move(m));
    }
    Candidate m = seed;
    std::int32_t over = 0;
    for (std::int32_t r = 0; r < p; ++r)
      if (peak[static_cast<std::size_t>(r)] > capacity)
        if (const std::size_t pick = largest_kept(r); pick < n) {
          m.chunks[pick].recompute = true;
          ++over;
        }
    if (over >= 2) out.push_back(std::move(m));
  }
  for (std::size_t i = by_mem.size(); i-- > by_mem.size() - std::min<std::size_t>(2, by_mem.size());) {
    const std::int32_t r = by_mem[i];
    std::size_t pick = n;
    for (std::size_t j = 0; j < n; ++j) {
      const schedule::Chunk& c = seed.chunks[j];
      if (c.rank == r && c.recompute &&
          (pick == n || c.layer_end - c.layer_begin < seed.chunks[pick].layer_end - seed.chunks[pick].layer_begin))
        pick = j;
    }
    if (pick == n) continue;
    Candidate m = seed;
    m.chunks[pick].recompute = false;
    out.push_back(std::move(m));
  }
  return out;
}

// The baselines, with recomputation where they do not fit without it.
void Searcher::score_baselines(const spec::Batch& batch, BatchResult& out) {
  const auto gens = baseline_generators();
  std::vector<schedule::Schedule> base_sched;
  for (const auto* g : gens) base_sched.push_back(baseline_schedule(plan_, *g, model_, batch));
  std::vector<Candidate> cands(gens.size());
  for (std::size_t j = 0; j < gens.size(); ++j) {
    cands[j].method = gens[j]->name;
    cands[j].fixed = &base_sched[j];
    cands[j].detail = std::string(gens[j]->name) + ", static partition, token-budget packing (" +
                      std::to_string(base_sched[j].n_microbatches) + " microbatches)";
  }
  out.baselines = evaluate_all(cands, batch);
  if (opt_.allow_recompute) {
    // What a careful user does when a batch does not fit: recompute the encoders'
    // activations, or every layer's; the fastest that fits.
    std::vector<Candidate> again;
    std::vector<std::size_t> which;
    for (std::size_t j = 0; j < gens.size(); ++j)
      if (!out.baselines[j].fits())
        for (const Recompute rc : {Recompute::encoders, Recompute::all}) {
          again.push_back(cands[j]);
          again.back().recompute = rc;
          which.push_back(j);
        }
    if (!again.empty()) {
      std::vector<Evaluated> r = evaluate_all(again, batch);
      for (std::size_t k = 0; k < r.size(); ++k)
        if (better(r[k], 0, out.baselines[which[k]], 1)) out.baselines[which[k]] = r[k];
    }
  }
  out.best_baseline = best_index(out.baselines);
}

// Level 2 in SEMU: the layouts with the first pass order on the main packing; when none
// fits, the same recomputing the encoders' activations, or all, or none on the second
// (smaller microbatches) packing.
Searcher::Level Searcher::score_layouts(std::vector<Candidate> layouts, const std::vector<Packing>& packings,
                                        const spec::Batch& batch) {
  Level lv;
  lv.level = std::move(layouts);
  lv.structural = lv.level;
  for (Candidate& c : lv.level) c.finish_detail();
  lv.scored = evaluate_all(lv.level, batch);
  if (opt_.allow_recompute && std::none_of(lv.scored.begin(), lv.scored.end(), [](const Evaluated& e) { return e.fits(); })) {
    // Nothing fits: the same structures recomputing the encoders' activations, or all, or
    // none on twice as many (smaller) microbatches.
    const std::size_t n = lv.level.size();
    for (std::size_t i = 0; i < n; ++i)
      for (const Recompute rc : {Recompute::encoders, Recompute::none}) {
        Candidate c = lv.structural[i];
        if (rc == Recompute::none) c.packing = packings.back();
        c.recompute = rc;
        lv.structural.push_back(c);
        c.finish_detail();
        lv.level.push_back(std::move(c));
      }
    for (std::size_t i = 0; i < n; ++i) {
      lv.level[i].recompute = Recompute::all;
      lv.structural[i].recompute = Recompute::all;
    }
    lv.scored = evaluate_all(lv.level, batch);
  }
  return lv;
}

// Level 2's pass orders and packings on the best layouts.
void Searcher::vary_orders(Level& lv, const std::vector<Packing>& packings, const spec::Batch& batch) {
  const std::vector<std::size_t> top = ranked(lv.scored);
  std::vector<Candidate> more;
  // The best three of each recomputation mode (they trade memory for time differently).
  std::vector<std::size_t> chosen;
  for (const Recompute rc : {Recompute::none, Recompute::encoders, Recompute::all}) {
    std::size_t taken = 0;
    for (const std::size_t i : top)
      if (taken < 3 && lv.level[i].recompute == rc && lv.scored[i].fits()) {
        chosen.push_back(i);
        ++taken;
      }
  }
  if (chosen.empty() && !top.empty()) chosen.push_back(top[0]);
  // Each packing balanced on the modules' summed FLOPs instead, and as packed with its
  // heaviest or its lightest microbatches first (a long video's microbatch early fills
  // the pipeline behind it, late it drains alone).
  std::vector<std::pair<Packing, const char*>> orders;
  for (const auto& pk : packings)
    orders.emplace_back(pack_balanced(model_, batch, static_cast<std::int32_t>(pk.size()), true), ", total-balanced");
  for (const auto& pk : packings) {
    orders.emplace_back(pk, "");
    orders.emplace_back(order_by_work(model_, batch, pk, true), ", heaviest first");
    orders.emplace_back(order_by_work(model_, batch, pk, false), ", lightest first");
  }
  for (const std::size_t t : chosen) {
    const Candidate& src = lv.level[t];
    for (const WeavePolicy& pol : kPolicies)
      for (const auto& [pk, order_text] : orders) {
        if (pk == src.packing && pol.split_backward == src.policy.split_backward && pol.forward == src.policy.forward &&
            pol.w_bounded_by_memory == src.policy.w_bounded_by_memory)
          continue;
        Candidate c = lv.structural[t];
        c.policy = pol;
        c.packing = pk;
        c.recompute = src.recompute;
        c.finish_detail();
        c.detail += order_text;
        more.push_back(std::move(c));
      }
  }
  std::vector<Evaluated> r = evaluate_all(more, batch);
  for (std::size_t i = 0; i < more.size(); ++i) {
    lv.level.push_back(std::move(more[i]));
    lv.scored.push_back(std::move(r[i]));
  }
}

// Level 3: tuning from the best few distinct layouts that fit, and from the best few that
// do not fit without recomputation (tuning switches it on where memory runs out). Returns
// each seed's last improvement.
std::vector<Evaluated> Searcher::tune(const Level& lv, const spec::Batch& batch, const common::Stopwatch& watch,
                                      bool& budget_hit) {
  const std::vector<std::size_t> order = ranked(lv.scored);
  struct Seed {
    Candidate cand;
    Evaluated eval;
    bool done = false;
  };
  const auto capacity = static_cast<std::int64_t>(cluster_.device.memory_bytes);
  // How far a candidate is from fitting: its ranks' bytes above capacity, summed.
  const auto excess = [&](const Evaluated& e) {
    std::int64_t x = 0;
    for (const std::int64_t b : e.result.peak_mem_bytes) x += std::max<std::int64_t>(0, b - capacity);
    return x;
  };
  // Tuning's order: fitting first; among fitting the lower score, among the others the
  // smaller excess.
  const auto tuned_better = [&](const Evaluated& a, const Evaluated& b) {
    if (a.fits() != b.fits()) return a.fits();
    return a.fits() ? a.score_ns() < b.score_ns() : excess(a) < excess(b);
  };
  std::vector<std::size_t> by_excess = order;
  std::stable_sort(by_excess.begin(), by_excess.end(),
                   [&](std::size_t a, std::size_t b) { return excess(lv.scored[a]) < excess(lv.scored[b]); });
  std::vector<Seed> seeds;
  for (const bool fitting : {true, false}) {
    std::size_t taken = 0;
    for (const std::size_t i : fitting ? order : by_excess) {
      if (taken == (fitting ? 2u : 1u)) break;
      if (lv.scored[i].fits() != fitting || (!fitting && !opt_.allow_recompute)) continue;
      bool dup = false;
      for (const Seed& s : seeds) dup = dup || s.cand.chunks == lv.scored[i].schedule.chunks;
      if (dup) continue;
      Seed s{lv.level[i], lv.scored[i], false};
      s.cand.chunks = lv.scored[i].schedule.chunks;  // with the recomputation flags evaluated
      s.cand.recompute = Recompute::none;
      seeds.push_back(std::move(s));
      ++taken;
    }
  }
  for (std::int32_t round = 0; round < opt_.tune_rounds; ++round) {
    if (watch.elapsed_ms() >= opt_.time_budget_ms) {
      budget_hit = true;
      break;
    }
    std::vector<Candidate> moves;
    std::vector<std::size_t> owner;
    for (std::size_t k = 0; k < seeds.size(); ++k) {
      if (seeds[k].done) continue;
      const Seed& s = seeds[k];
      for (Candidate& m : tuning_moves(s.cand, s.eval)) {
        if (m.detail.find(", tuned") == std::string::npos) m.detail += ", tuned";
        moves.push_back(std::move(m));
        owner.push_back(k);
      }
    }
    if (moves.empty()) break;
    std::vector<Evaluated> r = evaluate_all(moves, batch);
    std::vector<std::size_t> best_move(seeds.size(), moves.size());
    for (std::size_t i = 0; i < r.size(); ++i) {
      if (opt_.charge_switch) r[i].switch_ns = switch_ns(previous_, r[i].schedule.chunks);
      const std::size_t k = owner[i];
      if (tuned_better(r[i], seeds[k].eval) && (best_move[k] == moves.size() || tuned_better(r[i], r[best_move[k]])))
        best_move[k] = i;
    }
    bool any = false;
    for (std::size_t k = 0; k < seeds.size(); ++k) {
      if (seeds[k].done) continue;
      if (best_move[k] == moves.size()) {
        seeds[k].done = true;
        continue;
      }
      any = true;
      seeds[k].cand = moves[best_move[k]];
      seeds[k].eval = r[best_move[k]];
    }
    if (!any) break;
  }
  std::vector<Evaluated> out;
  for (Seed& s : seeds) out.push_back(std::move(s.eval));
  return out;
}

BatchResult Searcher::search(const spec::Batch& batch) {
  common::Stopwatch watch;
  BatchResult out;
  out.batch = batch.index;
  const std::int64_t before = stats_.candidates;

  score_baselines(batch, out);
  // Everything scored for this batch: the baselines (charged a partition change) first.
  std::vector<Evaluated> pool;
  for (const Evaluated& b : out.baselines) {
    Evaluated e = b;
    e.detail = "= " + b.method + " (" + b.detail + ")";
    e.method = "pipeweaver";
    if (opt_.charge_switch) e.switch_ns = switch_ns(previous_, e.schedule.chunks);
    pool.push_back(std::move(e));
  }

  // Levels 1 and 2: module order x chunks per module x placement, scored first with one pass
  // order on the interleaved baseline's microbatch count (the largest); the structures are
  // pre-ranked by the busiest rank's share of the work (cheap), and the best few go to SEMU.
  std::int32_t m_main = 0;
  for (const Evaluated& b : out.baselines) m_main = std::max(m_main, b.schedule.n_microbatches);
  std::vector<Packing> packings;
  packings.push_back(pack_balanced(model_, batch, m_main));
  // Smaller microbatches too (twice as many): less activation memory each and a shorter
  // fill and drain, against more per-microbatch overhead; SEMU decides.
  if (static_cast<std::size_t>(2 * m_main) <= batch.samples.size()) packings.push_back(pack_balanced(model_, batch, 2 * m_main));
  const auto& main_packing = packings.front();
  const std::vector<Structure> structures =
      ranked_structures(model_, cost::Device::from(cluster_.device, profile_), options_, batch,
                        static_cast<std::int32_t>(cluster_.pipeline_size), std::max(1, opt_.max_chunks_per_rank),
                        main_packing.size());
  std::vector<Candidate> layouts;
  for (const Structure& st : structures) {
    Candidate c;
    c.chunks = st.chunks;
    c.packing = main_packing;
    c.policy = kPolicies[0];
    c.detail = st.text;
    layouts.push_back(std::move(c));
  }
  if (!previous_.empty()) {
    Candidate c;
    c.chunks = previous_;
    c.packing = main_packing;
    c.policy = kPolicies[0];
    c.detail = "previous batch's layout (" + std::to_string(previous_.size()) + " chunks)";
    layouts.push_back(std::move(c));
  }
  Level lv = score_layouts(std::move(layouts), packings, batch);
  vary_orders(lv, packings, batch);
  for (std::size_t i = 0; i < lv.scored.size(); ++i)
    if (opt_.charge_switch) lv.scored[i].switch_ns = switch_ns(previous_, lv.scored[i].schedule.chunks);

  for (Evaluated& e : tune(lv, batch, watch, out.budget_hit)) pool.push_back(std::move(e));
  for (Evaluated& e : lv.scored) pool.push_back(std::move(e));
  out.best = pool[best_index(pool)];
  out.best.method = "pipeweaver";
  previous_ = out.best.schedule.chunks;
  out.candidates = stats_.candidates - before;
  out.search_ms = watch.elapsed_ms();
  if (out.search_ms > opt_.time_budget_ms) out.budget_hit = true;
  return out;
}

}  // namespace pipeweaver::search
