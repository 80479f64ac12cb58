#include "sparse/sparse_ffn.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <numeric>
#include <tuple>

#include "common/errors.hpp"
#include "ops/neuron_ops.hpp"

namespace powerinfer2::sparse {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

constexpr std::size_t kMaxReadBytes = std::size_t{1} << 20;  // coalesced reads stop at 1 MiB

// Adds a read of `len` bytes at `off` into `dest`, merged into the last one when both the
// file range and the destination continue it and the merged read stays within `max_bytes`;
// returns the index of the read that carries it.
std::int32_t append_read(std::vector<io::ReadRequest>& reqs, std::uint64_t off, std::size_t len, std::uint8_t* dest,
                         std::size_t max_bytes) {
  if (!reqs.empty()) {
    io::ReadRequest& last = reqs.back();
    if (last.offset + last.length == off && static_cast<std::uint8_t*>(last.dest) + last.length == dest &&
        last.length + len <= max_bytes) {
      last.length += len;
      return static_cast<std::int32_t>(reqs.size() - 1);
    }
  }
  reqs.push_back({off, len, dest, nullptr});
  return static_cast<std::int32_t>(reqs.size() - 1);
}

}  // namespace

SparseFfn::SparseFfn(const model::Model& model, common::ThreadPool& pool, const SparseOptions& o,
                     std::uint64_t program_bytes, std::uint64_t forward_state_bytes, std::size_t max_batch)
    : model_(model),
      pi2_(model.pi2 ? *model.pi2 : throw common::UsageError(model.file.path() + " is not a converted sparse model",
                                                            "run powerinfer2-cli convert first")),
      cfg_(model.config),
      geo_(pi2_.geo),
      pool_(pool),
      opts_(o),
      max_batch_(max_batch) {
  if (opts_.mode == EngineMode::sparse && !pi2_.has_predictor() && !opts_.oracle)
    throw common::UsageError(model.file.path() + " has no activation predictor: sparse decode cannot pick neurons",
                             "run powerinfer2-cli train-predictor, or use the oracle predictor or dense decode");
  reader_ = std::make_unique<io::FlashReader>(model.file.path(), opts_.queue_depth, opts_.backend);

  const std::size_t n_layer = pi2_.layers.size(), n_clusters = geo_.n_clusters();
  const std::size_t cb = geo_.cluster_bytes();
  const std::vector<std::pair<std::uint32_t, std::uint32_t>> ranked = clusters_by_frequency();
  // GPU clusters: the most frequently active ones that fit beside the GPU's run buffers.
  gpu_.assign(n_layer, std::vector<bool>(n_clusters, false));
  std::size_t n_gpu = 0;
  if (opts_.gpu_memory_bytes > 0) {
    const ops::cuda::BundleLayout layout{geo_.type, geo_.dim, geo_.stride, geo_.up_offset(), geo_.down_offset()};
    const std::vector<std::size_t> widest(1, cfg_.ffn_dim);
    const std::uint64_t run = ops::cuda::NeuronFfn::device_bytes(layout, widest, max_batch_) - cfg_.ffn_dim * geo_.stride;
    n_gpu = opts_.gpu_memory_bytes > run ? static_cast<std::size_t>((opts_.gpu_memory_bytes - run) / cb) : 0;
    n_gpu = std::min(n_gpu, ranked.size());
    for (std::size_t k = 0; k < n_gpu; ++k) gpu_[ranked[k].first][ranked[k].second] = true;
  }
  for (const std::vector<bool>& g : gpu_) cpu_part_.push_back(std::find(g.begin(), g.end(), false) != g.end());

  // Run buffers first: the plan counts them as allocated.
  const std::size_t dim = cfg_.dim, ffn = cfg_.ffn_dim, threads = pool_.size();
  where_.assign(n_layer, std::vector<const std::uint8_t*>(n_clusters, nullptr));
  hot_.assign(n_layer, std::vector<bool>(n_clusters, false));
  items_.reserve(n_clusters);
  requests_.reserve(ffn);  // at most one read per neuron (partial clusters), else per cluster
  flags_count_ = std::max(ffn, n_clusters);
  flags_ = std::make_unique<std::atomic<std::uint32_t>[]>(flags_count_);
  act_.reserve(ffn);
  truth_.reserve(ffn);
  order_.reserve(n_clusters);
  mask_.reserve(ffn);
  std::size_t rank = 1;
  for (const model::Pi2Layer& L : pi2_.layers)
    if (L.predictor) rank = std::max(rank, L.predictor->rank());
  pred_h_ = common::AlignedBuffer<float>(rank);
  pred_g_ = common::AlignedBuffer<float>(ffn);
  pred_u_ = common::AlignedBuffer<float>(ffn);
  pred_ws_ = ops::Workspace(1, std::max(dim, rank), threads);
  xf_ = common::AlignedBuffer<float>(max_batch_ * dim);
  xq_ = common::AlignedBuffer<std::int8_t>(max_batch_ * dim);
  xd_ = common::AlignedBuffer<float>(max_batch_ * (dim / 32 + 1));
  xs_ = common::AlignedBuffer<std::int32_t>(max_batch_ * (dim / 32 + 1));
  partial_ = common::AlignedBuffer<float>(threads * max_batch_ * dim);
  thread_stall_s_.assign(threads, 0.0);
  thread_pred_.assign(threads, 0);
  thread_act_.assign(threads, 0);
  // Cold-slot bookkeeping for as many slots as the CPU's clusters: the most any budget gives.
  const std::size_t max_slots = n_layer * n_clusters - n_gpu;
  slot_owner_.reserve(max_slots);
  slot_stamp_.reserve(max_slots);
  lru_prev_.reserve(max_slots);
  lru_next_.reserve(max_slots);

  fixed_ = sparse::fixed_segment(model, program_bytes, forward_state_bytes, run_buffer_bytes());
  plan_ = plan_memory(pi2_, fixed_.total(), opts_, n_gpu);
  if (plan_.hot > 0) hot_store_ = model::WeightStore(plan_.hot);
  if (plan_.cold > 0) cold_store_ = model::WeightStore(plan_.cold);
  if (plan_.stream > 0) stream_store_ = model::WeightStore(plan_.stream);

  // Hot clusters: the most frequently active ones of those left to the CPU, stored layer by
  // layer in cluster order.
  {
    std::size_t taken = 0;
    for (const auto& [l, c] : ranked) {
      if (taken == plan_.hot_clusters) break;
      if (gpu_[l][c]) continue;
      hot_[l][c] = true;
      ++taken;
    }
    std::size_t pos = 0;
    for (std::size_t l = 0; l < n_layer; ++l)
      for (std::size_t c = 0; c < n_clusters; ++c)
        if (hot_[l][c]) where_[l][c] = hot_store_.data() + cb * pos++;
  }
  const std::size_t slots = plan_.cold_slots;
  slot_owner_.assign(slots, -1);
  slot_stamp_.assign(slots, 0);
  lru_prev_.resize(slots);
  lru_next_.resize(slots);
  for (std::size_t s = 0; s < slots; ++s) {
    lru_prev_[s] = static_cast<std::int32_t>(s) - 1;
    lru_next_[s] = s + 1 < slots ? static_cast<std::int32_t>(s + 1) : -1;
  }
  lru_head_ = slots > 0 ? 0 : -1;
  lru_tail_ = slots > 0 ? static_cast<std::int32_t>(slots - 1) : -1;

  load_hot();
  if (n_gpu > 0) load_gpu();
}

namespace {
template <class T>
std::uint64_t capacity_bytes(const std::vector<T>& v) {
  return v.capacity() * sizeof(T);
}
std::uint64_t capacity_bytes(const std::vector<bool>& v) { return (v.capacity() + 7) / 8; }
template <class T>
std::uint64_t nested_bytes(const std::vector<std::vector<T>>& v) {
  std::uint64_t b = capacity_bytes(v);
  for (const std::vector<T>& inner : v) b += capacity_bytes(inner);
  return b;
}
}  // namespace

std::uint64_t SparseFfn::run_buffer_bytes() const {
  return nested_bytes(where_) + nested_bytes(hot_) + nested_bytes(gpu_) + capacity_bytes(cpu_part_) +
         capacity_bytes(items_) + capacity_bytes(requests_) + flags_count_ * sizeof(std::atomic<std::uint32_t>) +
         capacity_bytes(act_) + capacity_bytes(truth_) + capacity_bytes(order_) + capacity_bytes(mask_) +
         pred_h_.size_bytes() + pred_g_.size_bytes() + pred_u_.size_bytes() + pred_ws_.size_bytes() +
         xf_.size_bytes() + xq_.size_bytes() + xd_.size_bytes() + xs_.size_bytes() + partial_.size_bytes() +
         capacity_bytes(thread_stall_s_) + capacity_bytes(thread_pred_) + capacity_bytes(thread_act_) +
         capacity_bytes(slot_owner_) + capacity_bytes(slot_stamp_) + capacity_bytes(lru_prev_) +
         capacity_bytes(lru_next_);
}

std::vector<std::pair<std::uint32_t, std::uint32_t>> SparseFfn::clusters_by_frequency() const {
  std::vector<std::tuple<double, std::uint32_t, std::uint32_t>> score;  // (-freq sum, cluster, layer)
  const std::size_t n_clusters = geo_.n_clusters();
  score.reserve(n_clusters * pi2_.layers.size());
  for (std::size_t l = 0; l < pi2_.layers.size(); ++l)
    for (std::size_t c = 0; c < n_clusters; ++c) {
      double s = 0.0;
      for (std::size_t i = c * geo_.cluster_size; i < (c + 1) * geo_.cluster_size; ++i) s += pi2_.layers[l].freq[i];
      score.emplace_back(-s, static_cast<std::uint32_t>(c), static_cast<std::uint32_t>(l));
    }
  std::sort(score.begin(), score.end());
  std::vector<std::pair<std::uint32_t, std::uint32_t>> out;
  out.reserve(score.size());
  for (const auto& [f, c, l] : score) out.emplace_back(l, c);
  return out;
}

void SparseFfn::load_gpu() {
  const auto t0 = Clock::now();
  const std::size_t n_layer = pi2_.layers.size(), n_clusters = geo_.n_clusters(), cb = geo_.cluster_bytes();
  std::vector<std::size_t> per_layer(n_layer, 0);
  for (std::size_t l = 0; l < n_layer; ++l)
    for (std::size_t c = 0; c < n_clusters; ++c)
      if (gpu_[l][c]) per_layer[l] += geo_.cluster_size;
  const ops::cuda::BundleLayout layout{geo_.type, geo_.dim, geo_.stride, geo_.up_offset(), geo_.down_offset()};
  gpu_ffn_ = std::make_unique<ops::cuda::NeuronFfn>(layout, cfg_.activation, per_layer, max_batch_);
  // Read with O_DIRECT into a staging buffer, a batch of clusters at a time, then copy up.
  constexpr std::size_t kBatch = 64;
  model::WeightStore staging(kBatch * cb);
  for (std::size_t l = 0; l < n_layer; ++l) {
    std::size_t pos = 0;  // neuron position in the layer's GPU segment
    for (std::size_t c0 = 0; c0 < n_clusters;) {
      std::vector<std::uint32_t> batch;
      std::vector<io::ReadRequest> reqs;
      std::size_t c = c0;
      for (; c < n_clusters && batch.size() < kBatch; ++c) {
        if (!gpu_[l][c]) continue;
        append_read(reqs, pi2_.layers[l].bundles_offset + c * cb, cb, staging.data() + batch.size() * cb,
                    std::max(kMaxReadBytes, cb));
        batch.push_back(static_cast<std::uint32_t>(c));
      }
      c0 = c;
      if (batch.empty()) continue;
      read_all(reqs, "read the GPU's neuron clusters");
      gpu_ffn_->upload(l, pos, staging.data(), batch.size() * geo_.cluster_size);
      pos += batch.size() * geo_.cluster_size;
    }
  }
  stats_.gpu_load_bytes = plan_.gpu;
  stats_.gpu_load_s = seconds_since(t0);
  reader_->reset_stats();
}

SparseFfn::~SparseFfn() = default;

bool SparseFfn::sparse_decode() const {
  if (opts_.mode == EngineMode::dense) return false;
  return opts_.oracle || pi2_.has_predictor();
}

std::string SparseFfn::io_description() const { return reader_->backend_description(); }

void SparseFfn::reset_stats() {
  const std::uint64_t lb = stats_.load_bytes, glb = stats_.gpu_load_bytes;
  const double ls = stats_.load_s, gls = stats_.gpu_load_s;
  stats_ = SparseStats{};
  stats_.gpu_load_bytes = glb;
  stats_.gpu_load_s = gls;
  std::fill(thread_stall_s_.begin(), thread_stall_s_.end(), 0.0);
  std::fill(thread_pred_.begin(), thread_pred_.end(), 0);
  std::fill(thread_act_.begin(), thread_act_.end(), 0);
  reader_->reset_stats();
  stats_.load_bytes = lb;
  stats_.load_s = ls;
}

void SparseFfn::read_all(std::vector<io::ReadRequest>& reqs, const char* what) {
  auto flags = std::make_unique<std::atomic<std::uint32_t>[]>(reqs.size());
  for (std::size_t r = 0; r < reqs.size(); ++r) {
    flags[r].store(0);
    reqs[r].done = &flags[r];
  }
  reader_->submit(reqs);
  reader_->wait_idle();
  for (std::size_t r = 0; r < reqs.size(); ++r)
    if (flags[r].load() != 1) throw common::IoError(model_.file.path(), what, reader_->last_error());
}

void SparseFfn::load_hot() {
  const auto t0 = Clock::now();
  const std::size_t cb = geo_.cluster_bytes();
  std::vector<io::ReadRequest> reqs;
  for (std::size_t l = 0; l < where_.size(); ++l)
    for (std::size_t c = 0; c < where_[l].size(); ++c) {
      if (!hot_[l][c]) continue;
      const std::uint64_t off = pi2_.layers[l].bundles_offset + c * cb;
      append_read(reqs, off, cb, const_cast<std::uint8_t*>(where_[l][c]), std::max(kMaxReadBytes, cb));
    }
  if (reqs.empty()) return;
  read_all(reqs, "read the hot neuron clusters");
  stats_.load_bytes = plan_.hot;
  stats_.load_s = seconds_since(t0);
  reader_->reset_stats();
}

void SparseFfn::quantize_inputs(const float* xb, std::size_t n) {
  const std::size_t dim = cfg_.dim, nb = dim / 32;
  std::memcpy(xf_.data(), xb, n * dim * sizeof(float));
  if (geo_.type == io::GgmlType::Q8_0 || geo_.type == io::GgmlType::Q4_0)
    for (std::size_t t = 0; t < n; ++t)
      ops::quantize_act_q8(xb + t * dim, dim, xq_.data() + t * dim, xd_.data() + t * (nb + 1), xs_.data() + t * (nb + 1));
}

void SparseFfn::predict(std::size_t layer, const float* xb) {
  const model::LayerPredictor& P = *pi2_.layers[layer].predictor;
  const std::size_t rank = P.rank(), ffn = cfg_.ffn_dim;
  ops::matvec(P.w1, {xb, cfg_.dim}, {pred_h_.data(), rank}, pool_, pred_ws_);
  if (P.relu)
    for (std::size_t r = 0; r < rank; ++r) pred_h_[r] = std::max(pred_h_[r], 0.0f);
  ops::matvec(P.gate, {pred_h_.data(), rank}, {pred_g_.data(), ffn}, pool_, pred_ws_);
  const bool up = P.up.data != nullptr;
  if (up) ops::matvec(P.up, {pred_h_.data(), rank}, {pred_u_.data(), ffn}, pool_, pred_ws_);
  act_.clear();
  for (std::size_t i = 0; i < ffn; ++i)
    if (pred_g_[i] + P.gate_bias[i] > 0.0f && (!up || pred_u_[i] + P.up_bias[i] > 0.0f))
      act_.push_back(static_cast<std::uint32_t>(i));
}

void SparseFfn::exact_active(std::size_t layer, std::vector<std::uint32_t>& out) {  // on quantize_inputs' xf_ / xq_
  const std::size_t ffn = cfg_.ffn_dim, dim = cfg_.dim;
  const ops::NeuronInput in{xf_.data(), {xq_.data(), xd_.data(), xs_.data(), nullptr, nullptr}};
  const std::uint8_t* base = pi2_.layers[layer].bundles.data();
  std::vector<std::uint8_t>& mask = mask_;
  mask.assign(ffn, 0);
  pool_.parallel_for(0, ffn, 64, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      const std::uint8_t* b = base + i * geo_.stride;
      const float g = ops::neuron_dot(geo_.type, b, in, dim);
      if (g <= 0.0f) continue;
      const float u = ops::neuron_dot(geo_.type, b + geo_.up_offset(), in, dim);
      mask[i] = ops::neuron_fires(cfg_.activation, g, u) ? 1 : 0;
    }
  });
  out.clear();
  for (std::size_t i = 0; i < ffn; ++i)
    if (mask[i]) out.push_back(static_cast<std::uint32_t>(i));
}

const std::uint8_t* SparseFfn::lookup(std::size_t layer, std::uint32_t cluster, bool touch, std::uint64_t stamp) {
  const std::uint8_t* p = where_[layer][cluster];
  if (p == nullptr || hot_[layer][cluster] || !touch) return p;
  const auto s = static_cast<std::int32_t>((p - cold_store_.data()) / static_cast<std::ptrdiff_t>(geo_.cluster_bytes()));
  slot_stamp_[s] = stamp;
  if (s != lru_head_) {  // move to the front
    lru_next_[lru_prev_[s]] = lru_next_[s];
    if (lru_next_[s] >= 0) lru_prev_[lru_next_[s]] = lru_prev_[s]; else lru_tail_ = lru_prev_[s];
    lru_prev_[s] = -1;
    lru_next_[s] = lru_head_;
    lru_prev_[lru_head_] = s;
    lru_head_ = s;
  }
  return p;
}

std::uint8_t* SparseFfn::claim_slot(std::size_t layer, std::uint32_t cluster, std::uint64_t stamp) {
  const std::int32_t s = lru_tail_;
  if (s < 0 || slot_stamp_[s] == stamp) return nullptr;  // every slot holds a cluster of this call
  const std::size_t n_clusters = geo_.n_clusters();
  if (slot_owner_[s] >= 0) {
    const auto o = static_cast<std::size_t>(slot_owner_[s]);
    where_[o / n_clusters][o % n_clusters] = nullptr;
  }
  slot_owner_[s] = static_cast<std::int64_t>(layer * n_clusters + cluster);
  std::uint8_t* p = cold_store_.data() + static_cast<std::size_t>(s) * geo_.cluster_bytes();
  where_[layer][cluster] = p;
  lookup(layer, cluster, true, stamp);  // to the front, stamped
  return p;
}

void SparseFfn::compute_item(const Item& it, std::size_t n, float* y, std::uint64_t& predicted,
                             std::uint64_t& active) const {
  const std::size_t dim = cfg_.dim, nb = dim / 32, N = geo_.cluster_size;
  const std::size_t c0 = static_cast<std::size_t>(it.cluster) * N;
  const std::size_t count = it.count == 0 ? N : it.count;
  for (std::size_t k = 0; k < count; ++k) {
    const std::size_t i = it.count == 0 ? c0 + k : act_[it.first + k];
    const std::uint8_t* b = it.data + (i - c0) * geo_.stride;
    for (std::size_t t = 0; t < n; ++t) {
      const ops::NeuronInput in{xf_.data() + t * dim,
                                {xq_.data() + t * dim, xd_.data() + t * (nb + 1), xs_.data() + t * (nb + 1), nullptr, nullptr}};
      const float g = ops::neuron_dot(geo_.type, b, in, dim);
      if (g <= 0.0f) continue;
      const float u = ops::neuron_dot(geo_.type, b + geo_.up_offset(), in, dim);
      if (!ops::neuron_fires(cfg_.activation, g, u)) continue;
      ops::neuron_axpy(geo_.type, b + geo_.down_offset(), g * u, y + t * dim, dim);
      ++active;
    }
  }
  predicted += count;
}

void SparseFfn::run_items(std::size_t layer, std::size_t n, float* out, bool dense) {
  const std::size_t dim = cfg_.dim, threads = pool_.size();
  // Resident items first, then those waiting for reads in the order the reads were issued.
  std::vector<std::uint32_t>& order = order_;
  order.clear();
  for (std::uint32_t k = 0; k < items_.size(); ++k)
    if (items_[k].request < 0) order.push_back(k);
  for (std::uint32_t k = 0; k < items_.size(); ++k)
    if (items_[k].request >= 0) order.push_back(k);
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  pool_.run_on_all([&](std::size_t th) {
    float* y = partial_.data() + th * max_batch_ * dim;
    std::fill(y, y + n * dim, 0.0f);
    double stall = 0.0;
    std::uint64_t pred = 0, act = 0;
    for (std::size_t k; (k = next.fetch_add(1, std::memory_order_relaxed)) < order.size();) {
      const Item& it = items_[order[k]];
      bool ok = true;
      for (std::int32_t r = it.request; r >= 0 && r <= it.request_last; ++r) {
        std::atomic<std::uint32_t>& f = flags_[static_cast<std::size_t>(r)];
        std::uint32_t v = f.load(std::memory_order_acquire);
        if (v == 0) {
          const auto t0 = Clock::now();
          v = io::wait_done(f);
          stall += seconds_since(t0);
        }
        ok = ok && v == 1;
      }
      if (!ok) {
        failed.store(true);
        continue;
      }
      compute_item(it, n, y, pred, act);
    }
    thread_stall_s_[th] += stall;
    if (!dense) {
      thread_pred_[th] += pred;
      thread_act_[th] += act;
    }
  });
  if (failed.load()) {
    // Forget the slots whose reads failed, then report.
    for (const Item& it : items_)
      for (std::int32_t r = it.request; r >= 0 && r <= it.request_last; ++r)
        if (flags_[static_cast<std::size_t>(r)].load() != 1 && !hot_[layer][it.cluster])
          where_[layer][it.cluster] = nullptr;
    throw common::IoError(model_.file.path(), "read neuron clusters", reader_->last_error());
  }
  for (std::size_t t = 0; t < n; ++t) {
    float* o = out + t * dim;
    std::memcpy(o, partial_.data() + t * dim, dim * sizeof(float));
    for (std::size_t th = 1; th < threads; ++th) {
      const float* p = partial_.data() + th * max_batch_ * dim + t * dim;
      for (std::size_t d = 0; d < dim; ++d) o[d] += p[d];
    }
  }
}

void SparseFfn::ffn(std::size_t layer, const float* xb, std::size_t n, float* out) {
  PWPI_CHECK(layer < pi2_.layers.size() && n >= 1 && n <= max_batch_);
  const auto t_start = Clock::now();
  const bool dense = opts_.mode == EngineMode::dense || n > 1 || !sparse_decode();
  if (gpu_ffn_) gpu_ffn_->launch(layer, xb, n);  // the GPU's clusters, while the CPU does the rest
  // A layer whose clusters are all on the GPU leaves the CPU nothing to predict or compute.
  const bool cpu_part = cpu_part_[layer];
  quantize_inputs(xb, n);
  if (!dense && cpu_part) {
    if (opts_.oracle) {
      exact_active(layer, act_);
    } else {
      predict(layer, xb);
      if (opts_.measure_recall) {
        exact_active(layer, truth_);
        stats_.true_neurons += truth_.size();
        std::size_t a = 0;
        for (std::uint32_t i : truth_) {  // both sorted
          while (a < act_.size() && act_[a] < i) ++a;
          if (a < act_.size() && act_[a] == i) ++stats_.found_neurons;
        }
      }
    }
  }
  // Items: the clusters to compute, with where their bytes are or which read brings them.
  ++stamp_;
  items_.clear();
  requests_.clear();
  const std::size_t N = geo_.cluster_size, cb = geo_.cluster_bytes();
  if (dense) {
    for (std::uint32_t c = 0; c < geo_.n_clusters(); ++c)
      if (!gpu_[layer][c]) items_.push_back({c, 0, 0, nullptr, -1});
  } else if (cpu_part) {
    for (std::size_t k = 0; k < act_.size();) {
      const auto c = static_cast<std::uint32_t>(act_[k] / N);
      std::size_t e = k;
      while (e < act_.size() && act_[e] / N == c) ++e;
      if (!gpu_[layer][c])
        items_.push_back({c, static_cast<std::uint32_t>(k), static_cast<std::uint32_t>(e - k), nullptr, -1});
      k = e;
    }
  }
  const std::uint64_t base_off = pi2_.layers[layer].bundles_offset;
  for (Item& it : items_) {
    // A dense pass (a prompt) streams what is not resident without disturbing the LRU.
    it.data = lookup(layer, it.cluster, !dense, stamp_);
    if (it.data != nullptr) {
      ++(hot_[layer][it.cluster] ? stats_.hot_hits : stats_.cold_hits);
      continue;
    }
    ++stats_.misses;
    std::uint8_t* dest = nullptr;
    if (!dense && plan_.cold_slots > 0) dest = claim_slot(layer, it.cluster, stamp_);
    // A cluster cached in a cold slot is read whole; one computed from the stream buffer and
    // then dropped needs only the 4 KiB pages holding its predicted neurons' bundles.
    const bool whole = dest != nullptr || it.count == 0;
    if (dest == nullptr) dest = stream_store_.data() + static_cast<std::size_t>(it.cluster) * cb;
    it.data = dest;
    const std::uint64_t cluster_off = base_off + static_cast<std::uint64_t>(it.cluster) * cb;
    if (whole) {
      it.request = it.request_last = append_read(requests_, cluster_off, cb, dest, kMaxReadBytes);
      continue;
    }
    const std::size_t c0 = static_cast<std::size_t>(it.cluster) * N;
    std::size_t lo = 0, hi = 0;  // the page span being gathered, relative to the cluster
    auto flush = [&] {
      const std::int32_t r = append_read(requests_, cluster_off + lo, hi - lo, dest + lo, kMaxReadBytes);
      if (it.request < 0) it.request = r;
      it.request_last = r;
    };
    for (std::size_t k = it.first; k < it.first + it.count; ++k) {
      const std::size_t rel = (act_[k] - c0) * geo_.stride;
      const std::size_t p0 = rel / io::kClusterAlign * io::kClusterAlign;
      const std::size_t p1 = std::min(cb, (rel + geo_.stride + io::kClusterAlign - 1) / io::kClusterAlign * io::kClusterAlign);
      if (hi > lo && p0 <= hi) {
        hi = std::max(hi, p1);
      } else {
        if (hi > lo) flush();
        lo = p0;
        hi = p1;
      }
    }
    flush();
  }
  for (std::size_t r = 0; r < requests_.size(); ++r) {
    flags_[r].store(0, std::memory_order_relaxed);
    requests_[r].done = &flags_[r];
    stats_.bytes_read += requests_[r].length;
  }
  stats_.reads += requests_.size();
  if (!requests_.empty()) {
    reader_->submit(requests_);
    if (!opts_.pipeline) {  // ablation: every read of the layer first, then the compute
      const auto t0 = Clock::now();
      reader_->wait_idle();
      const double waited = seconds_since(t0);
      for (double& s : thread_stall_s_) s += waited;
    }
  }
  if (items_.empty())  // every cluster of the layer is on the GPU
    std::fill(out, out + n * cfg_.dim, 0.0f);
  else
    run_items(layer, n, out, dense);
  if (gpu_ffn_) {
    const auto t0 = Clock::now();
    gpu_ffn_->add_result(out);
    stats_.gpu_wait_s += seconds_since(t0);
  }
  if (layer == 0) (dense ? stats_.dense_tokens : stats_.sparse_tokens) += n;
  stats_.predicted_neurons = std::accumulate(thread_pred_.begin(), thread_pred_.end(), std::uint64_t{0});
  stats_.active_neurons = std::accumulate(thread_act_.begin(), thread_act_.end(), std::uint64_t{0});
  stats_.stall_s = std::accumulate(thread_stall_s_.begin(), thread_stall_s_.end(), 0.0) /
                   static_cast<double>(thread_stall_s_.size());
  stats_.ffn_s += seconds_since(t_start);
}

}  // namespace powerinfer2::sparse
