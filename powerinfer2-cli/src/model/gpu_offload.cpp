#include "model/gpu_offload.hpp"

#include <algorithm>

#include "common/errors.hpp"
#include "model/weights.hpp"

namespace powerinfer2::model {

namespace {

using Field = ops::WeightMatrix model::LayerWeights::*;
constexpr Field kAttention[] = {&model::LayerWeights::wq, &model::LayerWeights::wk, &model::LayerWeights::wv,
                                &model::LayerWeights::wo};
constexpr Field kFfn[] = {&model::LayerWeights::gate, &model::LayerWeights::up, &model::LayerWeights::down};
constexpr std::size_t kMaxHeadDim = 128;  // the attention kernel's limit

std::uint64_t bytes_of(const ops::WeightMatrix& w) { return ops::cuda::matrix_bytes(w.type, w.n_rows, w.n_cols); }

}  // namespace

GpuProducts::GpuProducts(const Model& model, std::size_t max_batch, std::size_t n_ctx, std::uint64_t memory_bytes)
    : cfg_(model.config), w_(model.weights), with_ffn_(!model.pi2.has_value()), max_batch_(max_batch), n_ctx_(n_ctx) {
  // The tensor names, from the one tensor list (model/weights.hpp), by the field each binds.
  model::ModelWeights names_of;
  const std::vector<model::TensorSlot> slots = model::tensor_table(cfg_, names_of, with_ffn_);
  auto name_of = [&](const ops::WeightMatrix* key) -> std::string {
    for (const model::TensorSlot& s : slots)
      if (s.matrix == key) return s.name;
    throw common::InternalError("gpu offload: no tensor bound to a matrix");
  };
  std::vector<Field> fields(std::begin(kAttention), std::end(kAttention));
  if (with_ffn_) fields.insert(fields.end(), std::begin(kFfn), std::end(kFfn));
  for (const model::LayerWeights& L : w_.layers)
    for (const Field f : fields)
      if (!ops::cuda::supported_type((L.*f).type))
        throw common::UsageError("the GPU: weight type " + std::string(io::ggml_type_name((L.*f).type)) +
                                     " has no CUDA kernel",
                                 "quantize the model to F32, F16, Q8_0 or Q4_0");

  const std::size_t dim = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), ffn = cfg_.ffn_dim;
  const std::size_t half = cfg_.n_rot / 2;
  std::size_t max_cols = 0, max_rows = 0, max_elements = 0;
  std::uint64_t weights = 0;
  for (const model::LayerWeights& L : w_.layers)
    for (const Field f : fields) {
      max_cols = std::max(max_cols, (L.*f).n_cols);
      max_rows = std::max(max_rows, (L.*f).n_rows);
      max_elements = std::max(max_elements, (L.*f).n_rows * (L.*f).n_cols);
      weights += bytes_of(L.*f);
    }
  // Whole layers: + the output head, the norms, the KV cache and the run buffers.
  const ops::WeightMatrix& head = w_.output;
  const bool head_ok = ops::cuda::supported_type(head.type);
  const std::uint64_t kv = 2 * std::uint64_t{cfg_.n_layer} * n_ctx * kvd * sizeof(float);
  const std::uint64_t run = sizeof(float) * (max_batch * (dim + std::max(dim, qd) + 2 * qd + 2 * half) +
                                             (with_ffn_ ? 2 * max_batch * ffn : 0) + 2 * std::size_t{cfg_.n_layer} * dim);
  // The runner's sizes: the layers' matrices, and the head too for whole layers.
  struct Sizes {
    std::size_t cols, rows, elements;
  };
  const Sizes layer_sizes{max_cols, max_rows, max_elements};
  const Sizes whole_sizes{std::max(max_cols, head.n_cols), std::max(max_rows, head.n_rows),
                          std::max(max_elements, head.n_rows * head.n_cols)};
  auto scratch_for = [&](const Sizes& z) {
    return ops::cuda::GemmRunner::scratch_bytes(max_batch, z.cols, z.rows, z.elements);
  };
  whole_ = head_ok && cfg_.head_dim <= kMaxHeadDim &&
           scratch_for(whole_sizes) + weights + bytes_of(head) + kv + run <= memory_bytes;
  const Sizes& sizes = whole_ ? whole_sizes : layer_sizes;
  const std::uint64_t scratch = scratch_for(sizes);
  if (scratch >= memory_bytes)
    throw common::UsageError("GPU memory of " + std::to_string(memory_bytes >> 20) +
                                 " MiB is too small: the GPU products need " + std::to_string(scratch >> 20) +
                                 " MiB of scratch alone",
                             "give it more GPU memory, or run on the CPU");
  runner_ = std::make_unique<ops::cuda::GemmRunner>(max_batch, sizes.cols, sizes.rows, sizes.elements);
  device_bytes_ = scratch;

  auto upload = [&](const ops::WeightMatrix& w, const std::string& name) {
    const io::GgufTensorView t = model.file.tensor(name);
    mats_.emplace(&w, ops::cuda::upload_matrix(w.type, t.data.data(), w.n_rows, w.n_cols));
    device_bytes_ += bytes_of(w);
  };
  for (std::size_t l = 0; l < cfg_.n_layer; ++l) {
    const model::LayerWeights& L = w_.layers[l];
    std::uint64_t need = 0;
    for (const Field f : fields) need += bytes_of(L.*f);
    if (device_bytes_ + need > memory_bytes) break;  // this layer and the later ones: CPU
    for (const Field f : fields) upload(L.*f, name_of(&(names_of.layers[l].*f)));
    ++resident_layers_;
  }
  if (!whole_) return;
  // The head: "output.weight", or the embedding when the model ties them.
  upload(head, w_.tied_output ? std::string("token_embd.weight") : name_of(&names_of.output));
  auto floats = [](std::size_t n) { return ops::cuda::DeviceBytes(std::max<std::size_t>(n, 1) * sizeof(float)); };
  for (const model::LayerWeights& L : w_.layers) {
    attn_norm_.push_back(floats(dim));
    attn_norm_.back().upload(L.attn_norm.data(), dim * sizeof(float));
    ffn_norm_.push_back(floats(dim));
    ffn_norm_.back().upload(L.ffn_norm.data(), dim * sizeof(float));
  }
  k_cache_ = floats(cfg_.n_layer * n_ctx * kvd);
  v_cache_ = floats(cfg_.n_layer * n_ctx * kvd);
  x_ = floats(max_batch * dim);
  xb_ = floats(max_batch * std::max(dim, qd));
  q_ = floats(max_batch * qd);
  att_ = floats(max_batch * qd);
  if (with_ffn_) {
    g_ = floats(max_batch * ffn);
    u_ = floats(max_batch * ffn);
  }
  cos_ = floats(max_batch * half);
  sin_ = floats(max_batch * half);
  device_bytes_ += kv + run;
}

bool GpuProducts::products(std::span<const ops::Product> ps, const float* x, std::size_t n) {
  batch_w_.clear();
  batch_y_.clear();
  for (const ops::Product& p : ps) {
    const auto it = mats_.find(p.w);
    if (it == mats_.end()) return false;
    batch_w_.push_back(&it->second);
    batch_y_.push_back(p.y.data());
  }
  runner_->products(batch_w_, batch_y_, x, n);
  return true;
}

bool GpuProducts::ffn(std::size_t layer, const float* xb, std::size_t n, float* out) {
  if (!with_ffn_ || layer >= resident_layers_) return false;  // layers are uploaded from the first
  const model::LayerWeights& L = w_.layers[layer];
  runner_->ffn(mats_.at(&L.gate), mats_.at(&L.up), mats_.at(&L.down), cfg_.activation, xb, n, out);
  return true;
}

bool GpuProducts::layers(float* x_host, std::size_t n, std::size_t pos0, const Batch& b) {
  if (!whole_ || (b.ffn_backend == nullptr && !with_ffn_)) return false;
  PWPI_CHECK(n >= 1 && n <= max_batch_ && pos0 + n <= n_ctx_ && b.n_ctx == n_ctx_);
  ops::cuda::GemmRunner& R = *runner_;
  const std::size_t dim = cfg_.dim, qd = cfg_.q_dim(), kvd = cfg_.kv_dim(), hd = cfg_.head_dim;
  const std::size_t half = cfg_.n_rot / 2, ffn = cfg_.ffn_dim;
  float *x = buf(x_), *xb = buf(xb_), *q = buf(q_), *att = buf(att_);
  R.to_device(x, x_host, n * dim);
  R.to_device(buf(cos_), b.rope_cos, n * half);
  R.to_device(buf(sin_), b.rope_sin, n * half);
  for (std::size_t l = 0; l < cfg_.n_layer; ++l) {
    const model::LayerWeights& L = w_.layers[l];
    float* kc = buf(k_cache_) + l * n_ctx_ * kvd;
    float* vc = buf(v_cache_) + l * n_ctx_ * kvd;
    if (pos0 > 0) {  // the earlier positions, as the host has them (decode writes there)
      R.to_device(kc, b.k_cache + l * n_ctx_ * kvd, pos0 * kvd);
      R.to_device(vc, b.v_cache + l * n_ctx_ * kvd, pos0 * kvd);
    }
    R.rmsnorm(x, buf(attn_norm_[l]), n, dim, cfg_.rms_eps, xb);
    R.gemm(mats_.at(&L.wq), xb, n, q);
    R.gemm(mats_.at(&L.wk), xb, n, kc + pos0 * kvd);
    R.gemm(mats_.at(&L.wv), xb, n, vc + pos0 * kvd);
    R.rope(q, n, qd, cfg_.n_head, hd, half, buf(cos_), buf(sin_));
    R.rope(kc + pos0 * kvd, n, kvd, cfg_.n_kv_head, hd, half, buf(cos_), buf(sin_));
    R.attention(q, kc, vc, n, pos0, cfg_.n_head, cfg_.n_kv_head, hd, att);
    R.gemm(mats_.at(&L.wo), att, n, xb);
    R.add(x, xb, n * dim);
    R.rmsnorm(x, buf(ffn_norm_[l]), n, dim, cfg_.rms_eps, xb);
    if (b.ffn_backend != nullptr) {  // a sparse model: its engine (CPU and hot neurons) computes the FFN
      R.to_host(b.host_xb, xb, n * dim);
      b.ffn_backend->ffn(l, b.host_xb, n, b.host_out);
      R.to_device(xb, b.host_out, n * dim);
    } else {
      R.gemm(mats_.at(&L.gate), xb, n, buf(g_));
      R.gemm(mats_.at(&L.up), xb, n, buf(u_));
      R.activate(buf(g_), buf(u_), n * ffn, cfg_.activation);
      R.gemm(mats_.at(&L.down), buf(g_), n, xb);
    }
    R.add(x, xb, n * dim);
  }
  for (std::size_t l = 0; l < cfg_.n_layer; ++l) {  // the batch's K and V for decoding on the host
    const std::size_t off = (l * n_ctx_ + pos0) * kvd;
    R.to_host(b.k_cache + off, buf(k_cache_) + off, n * kvd);
    R.to_host(b.v_cache + off, buf(v_cache_) + off, n * kvd);
  }
  R.to_host(x_host, x, n * dim);
  return true;
}

}  // namespace powerinfer2::model
