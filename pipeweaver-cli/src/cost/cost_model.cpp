#include "cost/cost_model.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "common/errors.hpp"

namespace pipeweaver::cost {

using spec::Module;
using spec::ModuleKind;

// ---- device, rooflines, links ---------------------------------------------------------

Device Device::from(const spec::DeviceSpec& spec, const DeviceProfile* profile) {
  Device d;
  d.peak_flops = spec.peak_flops;
  d.hbm_bytes_per_s = spec.hbm_bytes_per_s;
  d.gemm_efficiency = spec.gemm_efficiency;
  d.attention_efficiency = spec.attention_efficiency;
  d.profile = profile;
  return d;
}

double gemm_ns(const Device& d, double m, double n, double k, double dtype_bytes) {
  if (m <= 0 || n <= 0 || k <= 0) return 0.0;
  const double flops = 2.0 * m * n * k;
  const double bytes = dtype_bytes * (m * k + k * n + m * n);
  const double compute_s = flops / (d.peak_flops * d.gemm_eff(flops));
  const double memory_s = bytes / d.hbm_bytes_per_s;
  return std::max(compute_s, memory_s) * 1e9;
}

double memory_ns(const Device& d, double bytes) {
  return bytes / d.hbm_bytes_per_s * 1e9;
}

std::int64_t p2p_ns(const spec::LinkSpec& link, std::int64_t bytes) {
  return round_ns(link.latency_ns + static_cast<double>(bytes) / link.bandwidth_bytes_per_s * 1e9);
}

// ---- loads ------------------------------------------------------------------------------

std::vector<ModuleLoad> microbatch_loads(const spec::ModelSpec& model, const spec::Batch& batch,
                                         std::span<const std::int32_t> samples) {
  std::vector<ModuleLoad> loads;
  microbatch_loads(model, batch, samples, loads);
  return loads;
}

void microbatch_loads(const spec::ModelSpec& model, const spec::Batch& batch, std::span<const std::int32_t> samples,
                      std::vector<ModuleLoad>& loads) {
  loads.resize(model.modules.size());
  for (ModuleLoad& l : loads) {
    l.seqs.clear();
    l.tokens = 0;  // projectors: the projected tokens until the end
  }
  for (const std::int32_t i : samples) {
    PWPI_CHECK(i >= 0 && static_cast<std::size_t>(i) < batch.samples.size());
    const spec::SampleShape shape = model.shape(batch.samples[static_cast<std::size_t>(i)]);
    loads[static_cast<std::size_t>(model.llm_index)].seqs.emplace_back(shape.llm_tokens, 1);
    for (const spec::EncoderPass& p : shape.encoder_passes)
      loads[static_cast<std::size_t>(p.module)].seqs.emplace_back(p.seq_len, p.count);
    for (const auto& [proj, tokens] : shape.projector_tokens) loads[static_cast<std::size_t>(proj)].tokens += tokens;
  }
  for (std::size_t m = 0; m < loads.size(); ++m) {
    auto& seqs = loads[m].seqs;
    if (model.modules[m].kind == ModuleKind::projector) {
      if (loads[m].tokens > 0) seqs.emplace_back(loads[m].tokens, 1);
      loads[m].tokens = 0;
    } else {
      std::sort(seqs.begin(), seqs.end());
      std::size_t out = 0;
      for (std::size_t k = 0; k < seqs.size(); ++k) {
        if (out > 0 && seqs[out - 1].first == seqs[k].first) seqs[out - 1].second += seqs[k].second;
        else seqs[out++] = seqs[k];
      }
      seqs.resize(out);
    }
    for (const auto& [len, count] : seqs) loads[m].tokens += len * count;
  }
}

// ---- per-layer costs ----------------------------------------------------------------------

PassCost& PassCost::operator+=(const PassCost& o) {
  f_ns += o.f_ns;
  i_ns += o.i_ns;
  w_ns += o.w_ns;
  act_bytes += o.act_bytes;
  act_w_bytes += o.act_w_bytes;
  return *this;
}

PassCost PassCost::scaled(std::int64_t n) const {
  return {f_ns * n, i_ns * n, w_ns * n, act_bytes * n, act_w_bytes * n};
}

namespace {

struct Times {
  double f = 0, i = 0, w = 0;
  // One GEMM [tokens, k_in] x [k_in, n_out] and its two backward GEMMs.
  void gemm(const Device& d, double tokens, double k_in, double n_out, double dt, bool input_grad = true) {
    f += gemm_ns(d, tokens, n_out, k_in, dt);
    if (input_grad) i += gemm_ns(d, tokens, k_in, n_out, dt);  // dX = dY W^T
    w += gemm_ns(d, k_in, n_out, tokens, dt);                  // dW = X^T dY
  }
  PassCost rounded(std::int64_t act, std::int64_t act_w) const {
    return {round_ns(f), round_ns(i), round_ns(w), act, act_w};
  }
};

std::int64_t norm_params(spec::NormKind kind, std::int64_t width) {
  return kind == spec::NormKind::layernorm ? 2 * width : width;
}

}  // namespace

std::int64_t layer_act_bytes_per_token(const spec::LayerShape& l, std::int64_t dt, const CostOptions& o) {
  const std::int64_t h = l.hidden, q = l.q_dim(), kv = l.kv_dim(), f = l.ffn;
  const std::int64_t mask = o.dropout ? 1 : 0;  // one byte per element of a dropout mask
  const std::int64_t norms = 2 * dt * h;                                     // inputs of the two norms
  const std::int64_t attention = dt * (h + q + 2 * kv + q) + mask * h;       // QKV in, Q, K, V, O-proj in
  const std::int64_t mlp = dt * h + (l.gated ? 3 * dt * f : 2 * dt * f) + mask * h;  // fc1 in, act in/out
  const std::int64_t lse = o.flash_attention ? 4 * l.heads : 0;              // fp32 log-sum-exp per head
  return norms + attention + mlp + lse;
}

std::int64_t score_act_bytes(const spec::LayerShape& l, std::int64_t seq_len, const CostOptions& o) {
  if (o.flash_attention) return 0;
  // Softmax output (2 bytes), and with dropout its mask (1) and output (2): Korthikanti's 5as^2.
  const std::int64_t per_score = o.dropout ? 5 : 2;
  return per_score * l.heads * seq_len * seq_len;
}

PassCost layer_cost(const Device& d, const Module& m, const ModuleLoad& load, std::int64_t dtype_bytes,
                    const CostOptions& o) {
  const double T = static_cast<double>(load.tokens);
  if (load.tokens == 0) return {};
  const double dt = static_cast<double>(dtype_bytes);
  Times t;
  if (m.kind == ModuleKind::projector) {
    double ew = m.input_norm ? 2.0 * static_cast<double>(m.dims.front()) : 0.0;
    std::int64_t act = m.input_norm ? dtype_bytes * m.dims.front() : 0, act_w = 0;
    for (std::size_t i = 0; i + 1 < m.dims.size(); ++i) {
      t.gemm(d, T, static_cast<double>(m.dims[i]), static_cast<double>(m.dims[i + 1]), dt);
      act_w += dtype_bytes * m.dims[i];
      if (i + 2 < m.dims.size()) {  // activation between GEMMs: read + write
        ew += 2.0 * static_cast<double>(m.dims[i + 1]);
        act += dtype_bytes * m.dims[i + 1];
      }
    }
    act += act_w;
    t.f += memory_ns(d, dt * T * ew);
    t.i += memory_ns(d, 2.0 * dt * T * ew);
    return t.rounded(act * load.tokens, act_w * load.tokens);
  }

  const spec::LayerShape& l = m.layer;
  const double h = static_cast<double>(l.hidden), q = static_cast<double>(l.q_dim()),
               kv = static_cast<double>(l.kv_dim()), f = static_cast<double>(l.ffn);
  t.gemm(d, T, h, q + 2.0 * kv, dt);              // fused QKV projection
  t.gemm(d, T, q, h, dt);                         // output projection
  t.gemm(d, T, h, (l.gated ? 2.0 : 1.0) * f, dt); // fc1 (gate + up when gated)
  t.gemm(d, T, f, h, dt);                         // fc2 (down)

  // Attention per packed sequence: the quadratic term; FlashAttention reads Q, K, V and
  // writes O once; its backward does ~2.5x the forward FLOPs and moves ~2x the bytes.
  double attn_flops = 0.0;
  std::int64_t score_bytes = 0;
  for (const auto& [len, count] : load.seqs) {
    attn_flops += static_cast<double>(count) * l.attention_flops(len);
    score_bytes += count * score_act_bytes(l, len, o);
  }
  const double attn_bytes = dt * T * (2.0 * q + 2.0 * kv);
  const double eff = d.attention_eff(attn_flops);
  t.f += std::max(attn_flops / (d.peak_flops * eff) * 1e9, memory_ns(d, attn_bytes));
  t.i += std::max(o.attention_backward_ratio * attn_flops / (d.peak_flops * eff) * 1e9, memory_ns(d, 2.0 * attn_bytes));

  // Elementwise, memory-bound: two norms (read + write h), two residual adds (read 2h,
  // write h), the activation (GELU: read + write ffn; SwiGLU: read 2 ffn, write ffn).
  const double ew = 10.0 * h + (l.gated ? 3.0 : 2.0) * f;
  t.f += memory_ns(d, dt * T * ew);
  t.i += memory_ns(d, 2.0 * dt * T * ew);

  const std::int64_t act_w = dtype_bytes * (2 * l.hidden + l.q_dim() + l.ffn) * load.tokens;  // GEMM inputs
  if (o.recompute || (o.recompute_encoders && m.kind == ModuleKind::encoder)) {
    t.i += t.f;  // the forward again, just before the backward
    return t.rounded(dtype_bytes * l.hidden * load.tokens, act_w);
  }
  const std::int64_t act = layer_act_bytes_per_token(l, dtype_bytes, o) * load.tokens + score_bytes;
  return t.rounded(act, act_w);
}

PassCost extras_cost(const Device& d, const Module& m, const ModuleLoad& load, std::int64_t dtype_bytes, bool first,
                     bool last) {
  if (load.tokens == 0 || m.kind == ModuleKind::projector) return {};
  const double T = static_cast<double>(load.tokens);
  const double dt = static_cast<double>(dtype_bytes);
  const double h = static_cast<double>(m.layer.hidden);
  const std::int64_t hi = m.layer.hidden;
  Times t;
  std::int64_t act = 0, act_w = 0;
  if (m.kind == ModuleKind::encoder && first) {
    if (m.input == spec::EncoderInput::patch) {
      // Patch embedding: a GEMM [tokens, patch^2 channels] x [patch^2 channels, h]; the
      // pixels need no gradient, so no I.
      const std::int64_t in = m.patch.patch_size * m.patch.patch_size * m.patch.channels;
      t.gemm(d, T, static_cast<double>(in), h, dt, /*input_grad=*/false);
      act = act_w = dtype_bytes * in * load.tokens;
    } else {
      // Whisper front end: conv1 (kernel 3, mel -> h) on `downsample` frames per token,
      // conv2 (kernel 3, stride 2, h -> h) as GEMMs over unfolded inputs.
      const std::int64_t ds = m.mel.downsample, mel = m.mel.mel_bins;
      t.gemm(d, T * static_cast<double>(ds), 3.0 * static_cast<double>(mel), h, dt, false);
      t.gemm(d, T, 3.0 * h, h, dt);
      act_w = dtype_bytes * (ds * 3 * mel + 3 * hi) * load.tokens;
      act = act_w + dtype_bytes * (ds * hi + hi) * load.tokens;  // GELU inputs
    }
  }
  if (m.kind == ModuleKind::llm) {
    if (first) {  // token embedding: a gather forward, a scatter-add of gradients backward
      t.f += memory_ns(d, 2.0 * dt * T * h);
      t.w += memory_ns(d, 2.0 * dt * T * h);
    }
    if (last) {
      const double v = static_cast<double>(m.vocab);
      t.f += memory_ns(d, dt * T * 2.0 * h);  // final norm
      t.i += memory_ns(d, dt * T * 4.0 * h);
      t.gemm(d, T, h, v, dt);                 // LM head
      t.f += memory_ns(d, 4.0 * T * v * 2.0);  // cross-entropy over fp32 logits
      t.i += memory_ns(d, 4.0 * T * v * 2.0);
      act_w = dtype_bytes * hi * load.tokens;                              // LM head input
      act = act_w + dtype_bytes * hi * load.tokens + 4 * m.vocab * load.tokens;  // + norm input, fp32 softmax
    }
  }
  return t.rounded(act, act_w);
}

std::int64_t static_bytes(std::int64_t params, std::int64_t dtype_bytes, std::int64_t data_parallel,
                          const CostOptions& o) {
  const std::int64_t optimizer = o.zero1 ? (params * o.optimizer_bytes_per_param + data_parallel - 1) / data_parallel
                                         : params * o.optimizer_bytes_per_param;
  return params * (dtype_bytes + o.grad_bytes_per_param) + optimizer;
}

// ---- chunks against the model ------------------------------------------------------------------

namespace {

[[noreturn]] void chunk_error(const common::Where& where, const std::string& pointer, const std::string& text,
                              const std::string& hint = {}) {
  throw common::InputError::message(where.with_pointer(pointer), text, hint);
}

// The encoder feeding projector p (through any modality), or -1.
int encoder_of(const spec::ModelSpec& model, int p) {
  if (model.image.present && model.image.projector == p) return model.image.encoder;
  if (model.video.present && model.video.projector == p) return model.video.encoder;
  if (model.audio.present && model.audio.projector == p) return model.audio.encoder;
  return -1;
}

}  // namespace

std::vector<int> projectors_of(const spec::ModelSpec& model, int e) {
  std::vector<int> out;
  for (const auto* v : {&model.image, &model.video})
    if (v->present && v->encoder == e && std::find(out.begin(), out.end(), v->projector) == out.end())
      out.push_back(v->projector);
  if (model.audio.present && model.audio.encoder == e &&
      std::find(out.begin(), out.end(), model.audio.projector) == out.end())
    out.push_back(model.audio.projector);
  return out;
}

std::vector<ChunkInfo> resolve_chunks(const spec::ModelSpec& model, const schedule::Schedule& s,
                                      const common::Where& where, const std::string& model_file) {
  const std::string model_name = model_file.empty() ? "model " + model.name
                                                     : std::filesystem::path(model_file).filename().string();
  std::string names;
  for (const auto& m : model.modules) names += (names.empty() ? "" : ", ") + m.name;
  const std::size_t n_mod = model.modules.size();
  std::vector<std::int32_t> next(n_mod, 0);
  std::vector<int> last_stage(n_mod, -1);
  int first_llm = -1;
  std::vector<ChunkInfo> out(s.chunks.size());
  for (std::size_t i = 0; i < s.chunks.size(); ++i) {
    const schedule::Chunk& c = s.chunks[i];
    const std::string ptr = "/chunks/" + std::to_string(i);
    const int mi = model.find(c.module);
    if (mi < 0)
      chunk_error(where, ptr + "/module", "no module named '" + c.module + "' in " + model_name,
                  "the model's modules: " + names);
    const Module& m = model.modules[static_cast<std::size_t>(mi)];
    std::string range(1, '[');  // appended: g++ 12 -O3 warns falsely on "[" + std::string
    range.append(std::to_string(c.layer_begin)).append(", ").append(std::to_string(c.layer_end)).append(")");
    if (c.layer_begin != next[static_cast<std::size_t>(mi)])
      chunk_error(where, ptr + "/layers",
                  "expected the layers of '" + m.name + "' to continue at layer " +
                      std::to_string(next[static_cast<std::size_t>(mi)]) + ", got " + range,
                  "each module's layers are tiled exactly once, in pipeline order");
    if (c.layer_end > m.layers)
      chunk_error(where, ptr + "/layers",
                  "module '" + m.name + "' has " + std::to_string(m.layers) + " layer" + (m.layers == 1 ? "" : "s") +
                      ", got " + range);
    if (m.kind == ModuleKind::llm && first_llm < 0) first_llm = static_cast<int>(i);
    if (m.kind != ModuleKind::llm && first_llm >= 0)
      chunk_error(where, ptr, "a chunk of '" + m.name + "' comes after the LLM's first chunk (stage " +
                                  std::to_string(first_llm) + ")",
                  "encoders and projectors feed the LLM's first layer: place their chunks before the LLM's");
    if (m.kind == ModuleKind::projector) {
      const int e = encoder_of(model, mi);
      if (e >= 0 && next[static_cast<std::size_t>(e)] != model.modules[static_cast<std::size_t>(e)].layers)
        chunk_error(where, ptr, "projector '" + m.name + "' comes before the last layer of its encoder '" +
                                    model.modules[static_cast<std::size_t>(e)].name + "'");
    }
    next[static_cast<std::size_t>(mi)] = c.layer_end;
    last_stage[static_cast<std::size_t>(mi)] = static_cast<int>(i);
    ChunkInfo& info = out[i];
    info.module = mi;
    info.n_layers = c.layer_end - c.layer_begin;
    info.first = c.layer_begin == 0;
    info.last = c.layer_end == m.layers;
    info.rank = c.rank;
    info.recompute = c.recompute;
  }
  for (std::size_t mi = 0; mi < n_mod; ++mi) {
    const Module& m = model.modules[mi];
    if (m.kind == ModuleKind::projector && next[mi] == 0) continue;  // folded below
    if (next[mi] != m.layers)
      chunk_error(where, "/chunks",
                  next[mi] == 0 ? "module '" + m.name + "' has no chunk"
                                : "layers [" + std::to_string(next[mi]) + ", " + std::to_string(m.layers) +
                                      ") of module '" + m.name + "' are in no chunk",
                  "every encoder and the LLM must be covered; a projector may be left out (it is then folded "
                  "into its encoder's last chunk)");
  }
  // Fold projectors without a chunk into their encoder's last chunk.
  for (std::size_t p = 0; p < n_mod; ++p) {
    if (model.modules[p].kind != ModuleKind::projector || next[p] != 0) continue;
    const int e = encoder_of(model, static_cast<int>(p));
    if (e < 0) continue;  // no modality uses it: no work
    auto& f = out[static_cast<std::size_t>(last_stage[static_cast<std::size_t>(e)])].folded_projectors;
    PWPI_CHECK_MSG(f.size() < 3, "at most 3 projectors fold into one chunk");
    f.push_back(static_cast<int>(p));
    last_stage[p] = last_stage[static_cast<std::size_t>(e)];
    next[p] = 1;
  }
  // Parameters per chunk, and what crosses each boundary.
  std::vector<std::uint8_t> started(n_mod, 0), done(n_mod, 0);
  for (std::size_t i = 0; i < out.size(); ++i) {
    ChunkInfo& c = out[i];
    const Module& m = model.modules[static_cast<std::size_t>(c.module)];
    c.params = static_cast<std::int64_t>(c.n_layers) * m.layer_params();
    const std::int64_t h = m.layer.hidden;
    if (m.kind == ModuleKind::projector) {
      c.params = m.params();
    } else if (m.kind == ModuleKind::encoder) {
      const std::int64_t tail = m.final_norm ? norm_params(m.layer.norm, h) : 0;
      if (c.first) c.params += m.extra_params() - tail;
      if (c.last) c.params += tail;
    } else {
      // Untied: embedding on the first chunk, LM head on the last. Tied: the last chunk
      // holds a copy of the embedding (as Megatron-LM does across pipeline stages).
      const std::int64_t embed = m.vocab * h;
      if (c.first) c.params += embed + (m.pre_norm ? norm_params(m.layer.norm, h) : 0);
      if (c.last) c.params += embed + (m.final_norm ? norm_params(m.layer.norm, h) : 0);
    }
    for (const int p : c.folded_projectors) c.params += model.modules[static_cast<std::size_t>(p)].params();

    started[static_cast<std::size_t>(c.module)] = 1;
    if (c.last) done[static_cast<std::size_t>(c.module)] = 1;
    for (const int p : c.folded_projectors) started[static_cast<std::size_t>(p)] = done[static_cast<std::size_t>(p)] = 1;
    if (i + 1 == out.size()) break;
    const std::size_t llm = static_cast<std::size_t>(model.llm_index);
    if (started[llm]) {
      c.carry.emplace_back(model.llm_index, model.llm().layer.hidden);
      continue;
    }
    for (std::size_t e = 0; e < n_mod; ++e) {
      const Module& em = model.modules[e];
      if (em.kind != ModuleKind::encoder || !started[e]) continue;
      if (!done[e]) {
        c.carry.emplace_back(static_cast<int>(e), em.layer.hidden);
        continue;
      }
      for (const int p : projectors_of(model, static_cast<int>(e))) {
        if (done[static_cast<std::size_t>(p)])
          c.carry.emplace_back(p, model.modules[static_cast<std::size_t>(p)].dims.back());
        else if (std::find(c.carry.begin(), c.carry.end(), std::pair<int, std::int64_t>(static_cast<int>(e), em.layer.hidden)) == c.carry.end())
          c.carry.emplace_back(static_cast<int>(e), em.layer.hidden);
      }
    }
  }
  return out;
}

// ---- the cost model with reuse -------------------------------------------------------------------

CostModel::CostModel(const spec::ModelSpec& model, const spec::ClusterSpec& cluster, CostOptions options,
                     const DeviceProfile* profile)
    : model_(model),
      cluster_(cluster),
      options_(options),
      recomputing_(options),
      device_(Device::from(cluster.device, profile)),
      load_cache_(model.modules.size()) {
  recomputing_.recompute = true;
}

void CostModel::clear_cache() {
  for (auto& m : load_cache_) m.clear();
  cached_loads_ = 0;
}

std::size_t CostModel::LoadHash::operator()(const ModuleLoad& l) const {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const auto& [len, count] : l.seqs) {
    h = (h ^ static_cast<std::uint64_t>(len)) * 0x100000001b3ULL;
    h = (h ^ static_cast<std::uint64_t>(count)) * 0x100000001b3ULL;
  }
  return static_cast<std::size_t>(h ^ (h >> 29));
}

PassCost CostModel::chunk_cost_fresh(const ChunkInfo& c, const std::vector<ModuleLoad>& loads) {
  const Module& m = model_.modules[static_cast<std::size_t>(c.module)];
  const ModuleLoad& load = loads[static_cast<std::size_t>(c.module)];
  PassCost total;
  // Without reuse every layer is costed on its own (they are identical: the sum is n times one).
  for (std::int32_t l = 0; l < c.n_layers; ++l) {
    total += layer_cost(device_, m, load, model_.dtype_bytes, c.recompute ? recomputing_ : options_);
    ++stats_.layers_costed;
  }
  total += extras_cost(device_, m, load, model_.dtype_bytes, c.first, c.last);
  for (const int p : c.folded_projectors) {
    total += layer_cost(device_, model_.modules[static_cast<std::size_t>(p)], loads[static_cast<std::size_t>(p)],
                        model_.dtype_bytes, options_);
    ++stats_.layers_costed;
  }
  return total;
}

PassCost CostModel::chunk_cost_reused(const ChunkInfo& c) {
  // One layer is costed for all n identical layers of the chunk and for every chunk of its
  // module on this load (spatial), and for later microbatches and batches with the same
  // load (temporal). Integer sums: n x layer + extras + projectors equals the fresh sum.
  const std::vector<ModuleLoad>& loads = plan_.loads;
  bool hit = true;
  const auto layer_of = [&](int module) -> const PassCost& {
    LoadEntry& e = *plan_.entries[static_cast<std::size_t>(module)];
    if (!(e.known & 1)) {
      e.layer = layer_cost(device_, model_.modules[static_cast<std::size_t>(module)],
                           loads[static_cast<std::size_t>(module)], model_.dtype_bytes, options_);
      e.known |= 1;
      ++stats_.layers_costed;
      hit = false;
    }
    return e.layer;
  };
  LoadEntry& e = *plan_.entries[static_cast<std::size_t>(c.module)];
  const int ends = (c.first ? 1 : 0) | (c.last ? 2 : 0);
  if (c.recompute && !(e.known & 32)) {
    e.layer_recomputed = layer_cost(device_, model_.modules[static_cast<std::size_t>(c.module)],
                                    loads[static_cast<std::size_t>(c.module)], model_.dtype_bytes, recomputing_);
    e.known |= 32;
    ++stats_.layers_costed;
    hit = false;
  }
  PassCost pc = (c.recompute ? e.layer_recomputed : layer_of(c.module)).scaled(c.n_layers);
  if (!(e.known & (2 << ends))) {
    e.extras[static_cast<std::size_t>(ends)] =
        extras_cost(device_, model_.modules[static_cast<std::size_t>(c.module)],
                    loads[static_cast<std::size_t>(c.module)], model_.dtype_bytes, c.first, c.last);
    e.known = static_cast<std::uint8_t>(e.known | (2 << ends));
    hit = false;
  }
  pc += e.extras[static_cast<std::size_t>(ends)];
  for (const int p : c.folded_projectors) pc += layer_of(p);
  if (hit) {
    ++stats_.chunk_hits;
    ++(e.first_use == mb_serial_ ? stats_.spatial_hits : stats_.temporal_hits);
  }
  return pc;
}

std::int64_t CostModel::boundary_bytes(const ChunkInfo& c, const std::vector<ModuleLoad>& loads) const {
  std::int64_t bytes = 0;
  for (const auto& [module, width] : c.carry) bytes += loads[static_cast<std::size_t>(module)].tokens * width * model_.dtype_bytes;
  return bytes;
}

void CostModel::make_plan(std::span<const ChunkInfo> chunks, std::int32_t n_microbatches) {
  Plan& p = plan_;
  const std::size_t n_st = chunks.size();
  // With reuse, stages with the same chunk shape (module, layer count, ends, folded
  // projectors) share one cost per microbatch (spatial reuse without a lookup); without,
  // every stage is its own shape and is costed from scratch.
  p.shape_of.resize(n_st);
  p.shape_rep.clear();
  for (std::size_t st = 0; st < n_st; ++st) {
    const ChunkInfo& c = chunks[st];
    std::size_t k = reuse_ ? 0 : p.shape_rep.size();
    for (; k < p.shape_rep.size(); ++k) {
      const ChunkInfo& r = chunks[static_cast<std::size_t>(p.shape_rep[k])];
      if (r.module == c.module && r.n_layers == c.n_layers && r.first == c.first && r.last == c.last &&
          r.recompute == c.recompute && r.folded_projectors == c.folded_projectors)
        break;
    }
    if (k == p.shape_rep.size()) p.shape_rep.push_back(static_cast<std::int32_t>(st));
    p.shape_of[st] = static_cast<std::int32_t>(k);
  }
  // Likewise boundaries that cross ranks over the same links with the same tensors
  // crossing: the same bytes in the same time. -1: no transfer (same rank).
  p.boundary_class.assign(n_st, -1);
  p.class_rep.clear();
  for (std::size_t st = 0; st + 1 < n_st; ++st) {
    const ChunkInfo& c = chunks[st];
    const ChunkInfo& next = chunks[st + 1];
    if (c.rank == next.rank) continue;
    const spec::LinkSpec& fwd = cluster_.link(c.rank, next.rank);
    const spec::LinkSpec& bwd = cluster_.link(next.rank, c.rank);
    std::size_t k = reuse_ ? 0 : p.class_rep.size();
    for (; k < p.class_rep.size(); ++k) {
      const std::size_t r = static_cast<std::size_t>(p.class_rep[k]);
      const spec::LinkSpec& rf = cluster_.link(chunks[r].rank, chunks[r + 1].rank);
      const spec::LinkSpec& rb = cluster_.link(chunks[r + 1].rank, chunks[r].rank);
      if (chunks[r].carry == c.carry && rf.latency_ns == fwd.latency_ns &&
          rf.bandwidth_bytes_per_s == fwd.bandwidth_bytes_per_s && rb.latency_ns == bwd.latency_ns &&
          rb.bandwidth_bytes_per_s == bwd.bandwidth_bytes_per_s)
        break;
    }
    if (k == p.class_rep.size()) p.class_rep.push_back(static_cast<std::int32_t>(st));
    p.boundary_class[st] = static_cast<std::int32_t>(k);
  }
  const std::size_t n_mb = static_cast<std::size_t>(n_microbatches);
  p.shape_cost.resize(n_mb * p.shape_rep.size());
  p.class_f_ns.resize(n_mb * p.class_rep.size());
  p.class_b_ns.resize(n_mb * p.class_rep.size());
  p.entries.assign(model_.modules.size(), nullptr);
}

StepCosts CostModel::step_costs(const schedule::Schedule& s, std::span<const ChunkInfo> chunks,
                                      const spec::Batch& batch) {
  StepCosts costs;
  step_costs(s, chunks, batch, costs);
  return costs;
}

void CostModel::step_costs(const schedule::Schedule& s, std::span<const ChunkInfo> chunks, const spec::Batch& batch,
                           StepCosts& costs) {
  PWPI_CHECK(chunks.size() == s.chunks.size());
  PWPI_CHECK_MSG(static_cast<std::int32_t>(s.microbatch_samples.size()) == s.n_microbatches,
                 "the schedule's microbatches must list their samples");
  const std::int32_t n_st = s.n_stages(), n_mb = s.n_microbatches;
  make_plan(chunks, n_mb);
  Plan& p = plan_;
  const std::size_t n_shapes = p.shape_rep.size(), n_classes = p.class_rep.size();

  // Per microbatch: each shape's pass costs and each boundary class's transfer times.
  for (std::int32_t mb = 0; mb < n_mb; ++mb) {
    const std::size_t m_i = static_cast<std::size_t>(mb);
    microbatch_loads(model_, batch, s.microbatch_samples[m_i], p.loads);
    const std::vector<ModuleLoad>& loads = p.loads;
    ++mb_serial_;
    if (reuse_) {
      // Bounded: starting over never changes a result.
      if (cached_loads_ >= (std::size_t{1} << 20)) clear_cache();
      for (std::size_t m = 0; m < loads.size(); ++m) {
        auto [it, inserted] = load_cache_[m].try_emplace(loads[m]);
        if (inserted) {
          it->second.first_use = mb_serial_;
          ++cached_loads_;
        }
        p.entries[m] = &it->second;
      }
      stats_.chunk_lookups += n_st;
      stats_.chunk_hits += n_st - static_cast<std::int64_t>(n_shapes);  // the other stages of each shape
      stats_.spatial_hits += n_st - static_cast<std::int64_t>(n_shapes);
    }
    for (std::size_t k = 0; k < n_shapes; ++k) {
      const ChunkInfo& c = chunks[static_cast<std::size_t>(p.shape_rep[k])];
      p.shape_cost[m_i * n_shapes + k] = reuse_ ? chunk_cost_reused(c) : chunk_cost_fresh(c, loads);
    }
    for (std::size_t k = 0; k < n_classes; ++k) {
      const std::size_t st = static_cast<std::size_t>(p.class_rep[k]);
      const std::int64_t bytes = boundary_bytes(chunks[st], loads);
      p.class_f_ns[m_i * n_classes + k] = p2p_ns(cluster_.link(chunks[st].rank, chunks[st + 1].rank), bytes);
      p.class_b_ns[m_i * n_classes + k] = p2p_ns(cluster_.link(chunks[st + 1].rank, chunks[st].rank), bytes);
    }
  }

  // Written stage by stage (each array's rows are contiguous); every entry is written.
  costs.n_stages = n_st;
  costs.n_microbatches = n_mb;
  const std::size_t n = static_cast<std::size_t>(n_st) * static_cast<std::size_t>(n_mb);
  for (auto* v : {&costs.f_ns, &costs.b_ns, &costs.i_ns, &costs.w_ns, &costs.send_f_ns, &costs.send_b_ns,
                  &costs.act_bytes, &costs.act_w_bytes})
    v->resize(n);
  for (std::int32_t st = 0; st < n_st; ++st) {
    const std::size_t k = static_cast<std::size_t>(p.shape_of[static_cast<std::size_t>(st)]);
    const std::int32_t cls = st + 1 < n_st ? p.boundary_class[static_cast<std::size_t>(st)] : -1;
    const std::size_t row = costs.at(st, 0);
    for (std::size_t mb = 0; mb < static_cast<std::size_t>(n_mb); ++mb) {
      const PassCost& pc = p.shape_cost[mb * n_shapes + k];
      const std::size_t x = row + mb;
      costs.f_ns[x] = pc.f_ns;
      costs.i_ns[x] = pc.i_ns;
      costs.w_ns[x] = pc.w_ns;
      costs.b_ns[x] = pc.i_ns + pc.w_ns;
      costs.act_bytes[x] = pc.act_bytes;
      costs.act_w_bytes[x] = pc.act_w_bytes;
      // Boundary st -> st + 1: the activations forward, their gradient back into st + 1's row.
      const std::size_t t = cls < 0 ? 0 : mb * n_classes + static_cast<std::size_t>(cls);
      costs.send_f_ns[x] = cls < 0 ? 0 : p.class_f_ns[t];
      if (st + 1 < n_st) costs.send_b_ns[x + static_cast<std::size_t>(n_mb)] = cls < 0 ? 0 : p.class_b_ns[t];
      if (st == 0) costs.send_b_ns[x] = 0;
    }
  }
  const std::int64_t dt = model_.dtype_bytes;
  costs.static_bytes.assign(static_cast<std::size_t>(s.n_ranks), 0);
  costs.capacity_bytes.resize(static_cast<std::size_t>(s.n_ranks));
  for (const ChunkInfo& c : chunks) costs.static_bytes[static_cast<std::size_t>(c.rank)] += c.params;  // params first
  for (std::size_t r = 0; r < costs.static_bytes.size(); ++r) {
    costs.static_bytes[r] = static_bytes(costs.static_bytes[r], dt, cluster_.data_parallel_size, options_);
    costs.capacity_bytes[r] = static_cast<std::int64_t>(cluster_.device.memory_bytes);
  }
}

}  // namespace pipeweaver::cost
