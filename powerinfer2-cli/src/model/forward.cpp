#include "model/forward.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/errors.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"
#include "ops/token_ops.hpp"

namespace powerinfer2::model {

namespace {

// y = W x for n tokens: matrix-vector for one token (decode), matrix-matrix for more.
void product(const ops::WeightMatrix& w, const float* x, std::size_t n, float* y, common::ThreadPool& pool,
             ops::Workspace& ws) {
  std::span<const float> xs(x, n * w.n_cols);
  std::span<float> ys(y, n * w.n_rows);
  if (n == 1)
    ops::matvec(w, xs, ys, pool, ws);
  else
    ops::matmul(w, xs, n, ys, pool, ws);
}

}  // namespace

Forward::Forward(const Model& model, common::ThreadPool& pool, std::size_t n_ctx, std::size_t max_batch)
    : cfg_(model.config), w_(model.weights), pool_(pool) {
  n_ctx_ = n_ctx == 0 ? cfg_.n_ctx : n_ctx;
  max_batch_ = std::max<std::size_t>(1, std::min(max_batch, n_ctx_));
  const std::size_t dim = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), ffn = cfg_.ffn_dim;
  ws_ = ops::Workspace(max_batch_, std::max({dim, qd, ffn}), pool.size());
  k_cache_ = common::AlignedBuffer<float>(cfg_.n_layer * n_ctx_ * kvd);
  v_cache_ = common::AlignedBuffer<float>(cfg_.n_layer * n_ctx_ * kvd);
  x_ = common::AlignedBuffer<float>(max_batch_ * dim);
  xb_ = common::AlignedBuffer<float>(max_batch_ * std::max(dim, qd));
  q_ = common::AlignedBuffer<float>(max_batch_ * qd);
  att_ = common::AlignedBuffer<float>(max_batch_ * qd);
  hb_ = common::AlignedBuffer<float>(max_batch_ * ffn);
  hb2_ = common::AlignedBuffer<float>(max_batch_ * ffn);
  logits_ = common::AlignedBuffer<float>(cfg_.vocab);
  const std::size_t group = cfg_.n_head / cfg_.n_kv_head;
  scores_stride_ = (ops::attend_group_scratch(group, kQueryBlock, n_ctx_, cfg_.head_dim) + 15) / 16 * 16;
  scores_ = common::AlignedBuffer<float>(pool.size() * scores_stride_);
  rope_cos_ = common::AlignedBuffer<float>(max_batch_ * (cfg_.n_rot / 2 + 1));
  rope_sin_ = common::AlignedBuffer<float>(max_batch_ * (cfg_.n_rot / 2 + 1));
}

std::size_t Forward::state_bytes() const {
  return (k_cache_.size() + v_cache_.size() + x_.size() + xb_.size() + q_.size() + att_.size() + hb_.size() +
          hb2_.size() + logits_.size() + scores_.size() + rope_cos_.size() + rope_sin_.size()) *
             sizeof(float) +
         ws_.size_bytes();
}

void Forward::embed(model::TokenId token, std::span<float> out) const {
  PWPI_CHECK(token >= 0 && static_cast<std::size_t>(token) < cfg_.vocab && out.size() == cfg_.dim);
  const ops::WeightMatrix& e = w_.token_embd;
  const auto* row = static_cast<const std::uint8_t*>(e.data) + static_cast<std::size_t>(token) * e.row_bytes();
  ops::dequantize_row(e.type, row, out.data(), cfg_.dim);  // the type was checked at load
}

std::span<const float> Forward::decode(model::TokenId token, std::size_t pos) {
  prefill_batch({&token, 1}, pos, {});
  return logits_.span();
}

std::span<const float> Forward::prefill(std::span<const model::TokenId> tokens, std::size_t pos0,
                                        std::span<float> all_logits) {
  PWPI_CHECK(!tokens.empty());
  PWPI_CHECK(all_logits.empty() || all_logits.size() == tokens.size() * cfg_.vocab);
  for (std::size_t i = 0; i < tokens.size(); i += max_batch_) {
    const std::size_t n = std::min(max_batch_, tokens.size() - i);
    prefill_batch(tokens.subspan(i, n), pos0 + i,
                  all_logits.empty() ? all_logits : all_logits.subspan(i * cfg_.vocab, n * cfg_.vocab));
  }
  return logits_.span();
}

void Forward::attention(std::size_t layer, const float* q, std::size_t n, std::size_t pos0, float* out) {
  // Tasks: (kv head, block of kQueryBlock queries), claimed by the threads; each kv head's
  // keys are read once per block for the whole group of query heads sharing it.
  const std::size_t qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), hd = cfg_.head_dim;
  const std::size_t group = cfg_.n_head / cfg_.n_kv_head;
  const std::size_t n_blocks = (n + kQueryBlock - 1) / kQueryBlock, n_tasks = cfg_.n_kv_head * n_blocks;
  const float* k0 = k_cache(layer, 0);
  const float* v0 = v_cache(layer, 0);
  std::atomic<std::size_t> next{0};
  auto body = [&](std::size_t thread_index) {
    float* scratch = scores_.data() + thread_index * scores_stride_;
    for (std::size_t task; (task = next.fetch_add(1, std::memory_order_relaxed)) < n_tasks;) {
      const std::size_t kvh = task % cfg_.n_kv_head, i0 = task / cfg_.n_kv_head * kQueryBlock;
      const std::size_t nq = std::min(kQueryBlock, n - i0);
      ops::attend_group(q + i0 * qd + kvh * group * hd, qd, nq, pos0 + i0 + 1, k0 + kvh * hd, v0 + kvh * hd, kvd, hd, group,
                   scratch, out + i0 * qd + kvh * group * hd, qd);
    }
  };
  if (n_tasks == 1)
    body(0);
  else
    pool_.run_on_all(body);
}

void Forward::prefill_batch(std::span<const model::TokenId> tokens, std::size_t pos0, std::span<float> all_logits) {
  const std::size_t n = tokens.size();
  PWPI_CHECK(n >= 1 && n <= max_batch_ && pos0 + n <= n_ctx_);
  PWPI_CHECK_MSG(ffn_backend_ != nullptr || w_.layers.front().gate.data != nullptr,
                 "a converted sparse model runs only with the sparse FFN backend");
  const std::size_t dim = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), ffn = cfg_.ffn_dim;
  const std::size_t hd = cfg_.head_dim, half = cfg_.n_rot / 2;
  float *x = x_.data(), *xb = xb_.data(), *q = q_.data(), *att = att_.data(), *hb = hb_.data(), *hb2 = hb2_.data();
  const bool offload = offload_ != nullptr && n >= offload_min_tokens_;

  for (std::size_t i = 0; i < n; ++i) {
    embed(tokens[i], {x + i * dim, dim});
    ops::rope_table(pos0 + i, cfg_.n_rot, cfg_.rope_base, {rope_cos_.data() + i * half, half},
               {rope_sin_.data() + i * half, half});
  }
  bool on_device = false;  // every layer on the device (a prompt with the whole model there)
  if (offload && !observer_) {
    const ProductOffload::Batch b{k_cache_.data(), v_cache_.data(), n_ctx_, rope_cos_.data(), rope_sin_.data(),
                                  ffn_backend_,       xb,               hb};
    on_device = offload_->layers(x, n, pos0, b);
  }
  for (std::size_t l = 0; l < cfg_.n_layer && !on_device; ++l) {
    const model::LayerWeights& L = w_.layers[l];
    for (std::size_t i = 0; i < n; ++i) ops::rmsnorm({x + i * dim, dim}, L.attn_norm, cfg_.rms_eps, {xb + i * dim, dim});
    // K and V go straight into the cache rows of positions pos0..pos0+n-1 (contiguous).
    float* kc = k_cache(l, pos0);
    float* vc = v_cache(l, pos0);
    {
      const ops::Product qkv[] = {{&L.wq, {q, n * qd}}, {&L.wk, {kc, n * kvd}}, {&L.wv, {vc, n * kvd}}};
      if (!(offload && offload_->products(qkv, xb, n))) ops::products(qkv, {xb, n * dim}, n, pool_, ws_);
    }
    for (std::size_t i = 0; i < n; ++i) {
      std::span<const float> c(rope_cos_.data() + i * half, half), s(rope_sin_.data() + i * half, half);
      ops::rope({q + i * qd, qd}, cfg_.n_head, hd, c, s);
      ops::rope({kc + i * kvd, kvd}, cfg_.n_kv_head, hd, c, s);
    }
    attention(l, q, n, pos0, att);
    {
      const ops::Product o[] = {{&L.wo, {xb, n * dim}}};
      if (!(offload && offload_->products(o, att, n))) product(L.wo, att, n, xb, pool_, ws_);
    }
    for (std::size_t j = 0; j < n * dim; ++j) x[j] += xb[j];

    for (std::size_t i = 0; i < n; ++i) ops::rmsnorm({x + i * dim, dim}, L.ffn_norm, cfg_.rms_eps, {xb + i * dim, dim});
    // The FFN's output [n][dim]: from the backend (sparse engine), the device, or the dense matrices.
    const float* ffn_out = hb;
    if (ffn_backend_ != nullptr) {
      ffn_backend_->ffn(l, xb, n, hb);
    } else if (!(offload && !observer_ && offload_->ffn(l, xb, n, hb))) {
      const ops::Product gate_up[] = {{&L.gate, {hb, n * ffn}}, {&L.up, {hb2, n * ffn}}};
      ops::products(gate_up, {xb, n * dim}, n, pool_, ws_);
      if (observer_) observer_(l, n, xb, hb, hb2);
      if (n == 1) {
        ops::ffn_activate(cfg_.activation, {hb, ffn}, {hb2, ffn});
      } else {  // a prompt's n x ffn exponentials: worth the threads
        pool_.parallel_for(0, n, 8, [&](std::size_t i0, std::size_t i1) {
          ops::ffn_activate(cfg_.activation, {hb + i0 * ffn, (i1 - i0) * ffn}, {hb2 + i0 * ffn, (i1 - i0) * ffn});
        });
      }
      product(L.down, hb, n, xb, pool_, ws_);
      ffn_out = xb;
    }
    for (std::size_t j = 0; j < n * dim; ++j) x[j] += ffn_out[j];
  }
  if (all_logits.empty()) {
    const float* last = x + (n - 1) * dim;
    ops::rmsnorm({last, dim}, w_.output_norm, cfg_.rms_eps, {xb, dim});
    const ops::Product head[] = {{&w_.output, {logits_.data(), cfg_.vocab}}};
    if (!(offload && offload_->products(head, xb, 1))) product(w_.output, xb, 1, logits_.data(), pool_, ws_);
  } else {
    for (std::size_t i = 0; i < n; ++i) ops::rmsnorm({x + i * dim, dim}, w_.output_norm, cfg_.rms_eps, {xb + i * dim, dim});
    const ops::Product head[] = {{&w_.output, all_logits}};
    if (!(offload && offload_->products(head, xb, n))) product(w_.output, xb, n, all_logits.data(), pool_, ws_);
    std::memcpy(logits_.data(), all_logits.data() + (n - 1) * cfg_.vocab, cfg_.vocab * sizeof(float));
  }
}

}  // namespace powerinfer2::model
