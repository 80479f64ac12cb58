#include "prep/pi2_writer.hpp"

#include <algorithm>
#include <cstring>
#include <span>

#include "common/errors.hpp"
#include "io/gguf_writer.hpp"
#include "io/pi2_format.hpp"
#include "model/weights.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::prep {

namespace {

std::size_t row_bytes_of(io::GgmlType type, std::size_t n) {
  return ops::WeightMatrix{type, nullptr, 1, n, ops::WeightLayout::gguf}.row_bytes();
}

// Bytes of row-major floats [rows][cols] in `type` (F16, or Q8_0 with cols a multiple of 32).
std::vector<std::uint8_t> typed_bytes(io::GgmlType type, std::span<const float> x, std::size_t cols) {
  const std::size_t rows = x.size() / cols, rb = row_bytes_of(type, cols);
  std::vector<std::uint8_t> out(rows * rb);
  for (std::size_t r = 0; r < rows; ++r) ops::quantize_row(type, x.data() + r * cols, out.data() + r * rb, cols);
  return out;
}

std::vector<float> to_floats(const ops::WeightMatrix& m) {
  std::vector<float> out(m.n_rows * m.n_cols);
  for (std::size_t r = 0; r < m.n_rows; ++r)
    ops::dequantize_row(m.type, static_cast<const std::uint8_t*>(m.data) + r * m.row_bytes(), out.data() + r * m.n_cols, m.n_cols);
  return out;
}

}  // namespace

void make_bundle(const model::BundleGeometry& g, const ops::WeightMatrix& gate, const ops::WeightMatrix& up,
                 const float* down_column, std::size_t i, std::uint8_t* out) {
  PWPI_CHECK(gate.layout == ops::WeightLayout::gguf && up.layout == ops::WeightLayout::gguf);
  std::memcpy(out, static_cast<const std::uint8_t*>(gate.data) + i * g.part_bytes, g.part_bytes);
  std::memcpy(out + g.up_offset(), static_cast<const std::uint8_t*>(up.data) + i * g.part_bytes, g.part_bytes);
  ops::quantize_row(g.type, down_column, out + g.down_offset(), g.dim);
  std::memset(out + 3 * g.part_bytes, 0, g.stride - 3 * g.part_bytes);
}

void write_pi2(const io::GgufFile& source, const model::ModelConfig& c, const Pi2WriteSpec& spec,
               const std::string& out_path, common::ThreadPool* pool) {
  const common::Where where(source.path());
  if (c.activation == model::FfnActivation::swiglu)
    throw common::UsageError(source.path() + ": a SwiGLU model is never sparse (SiLU is not exactly zero)",
                             "convert a ReGLU or dReLU model (ReLU-LLaMA, ProSparse, TurboSparse)");
  const bool from_pi2 = io::is_pi2(source);
  std::optional<model::Pi2Model> src_pi2;
  model::ModelWeights dense;  // dense source: FFN views
  io::GgmlType type;
  if (from_pi2) {
    src_pi2 = model::load_pi2(source, c);
    type = src_pi2->geo.type;
  } else {
    dense = model::load_weights(source, c);
    type = dense.layers.at(0).gate.type;
    for (std::size_t l = 0; l < c.n_layer; ++l) {
      const model::LayerWeights& L = dense.layers[l];
      if (L.gate.type != type || L.up.type != type || L.down.type != type)
        throw common::InputError::message(where, "layer " + std::to_string(l) + "'s FFN mixes types " +
                                                     std::string(io::ggml_type_name(L.gate.type)) + "/" +
                                                     std::string(io::ggml_type_name(L.up.type)) + "/" +
                                                     std::string(io::ggml_type_name(L.down.type)),
                                          "bundles need one type: quantize the model first");
    }
  }
  const std::size_t cluster = spec.cluster_size != 0 ? spec.cluster_size : from_pi2 ? src_pi2->geo.cluster_size : 32;
  const model::BundleGeometry g = model::bundle_geometry(type, c.dim, c.ffn_dim, cluster);
  const std::size_t ffn = c.ffn_dim, n_layer = c.n_layer;
  PWPI_CHECK(spec.order.empty() || spec.order.size() == n_layer);
  PWPI_CHECK(spec.freq.empty() || spec.freq.size() == n_layer);
  PWPI_CHECK(spec.predictors.empty() || spec.predictors.size() == n_layer);

  io::GgufWriter w;
  for (const io::GgufKeyValue& kv : source.metadata())
    if (kv.key != "general.alignment" && !kv.key.starts_with(io::kPi2KeyPrefix)) w.set(kv.key, kv.value);
  w.set_alignment(static_cast<std::uint32_t>(io::kClusterAlign));
  w.set(std::string(io::kPi2VersionKey), std::uint32_t{1});
  w.set(std::string(io::kPi2ClusterSizeKey), static_cast<std::uint32_t>(g.cluster_size));
  w.set(std::string(io::kPi2BundleTypeKey), static_cast<std::uint32_t>(g.type));
  w.set(std::string(io::kPi2StrideKey), static_cast<std::uint32_t>(g.stride));
  const std::uint64_t profiled = spec.profiled_tokens ? *spec.profiled_tokens : from_pi2 ? src_pi2->profiled_tokens : 0;
  w.set(std::string(io::kPi2ProfiledTokensKey), profiled);
  if (spec.predictor_recall >= 0.0f) {
    w.set(std::string(io::kPi2PredictorRecallKey), spec.predictor_recall);
    w.set(std::string(io::kPi2PredictorPrecisionKey), spec.predictor_precision);
  } else if (from_pi2 && spec.predictors.empty()) {
    for (std::string_view k : {io::kPi2PredictorRecallKey, io::kPi2PredictorPrecisionKey})
      if (const io::GgufValue* v = source.find(k)) w.set(std::string(k), *v);
  }

  for (const io::GgufTensorInfo& t : source.tensor_infos()) {
    if (io::is_pi2_ffn_tensor(t.name)) continue;
    const io::GgufTensorView v = source.tensor(t.name);
    w.add_tensor(t.name, t.type, std::vector<std::uint64_t>(v.shape.begin(), v.shape.end()), v.data);
  }

  std::string kind;  // of the predictors written, if any
  auto order_of = [&](std::size_t l, std::size_t p) -> std::size_t {
    return spec.order.empty() ? p : static_cast<std::size_t>(spec.order[l].at(p));
  };
  for (std::size_t l = 0; l < n_layer; ++l) {
    if (!spec.order.empty()) {
      std::vector<std::int32_t> sorted(spec.order[l]);
      std::sort(sorted.begin(), sorted.end());
      for (std::size_t i = 0; i < ffn; ++i) PWPI_CHECK_MSG(sorted.at(i) == static_cast<std::int32_t>(i), "order must be a permutation");
    }
    w.add_tensor_generated(io::pi2_layer_tensor(l, "ffn_bundles"), io::GgmlType::I8, {g.stride, ffn},
                           [&, l](std::span<std::uint8_t> bytes) {
                             if (from_pi2) {
                               const model::Pi2Layer& S = src_pi2->layers[l];
                               for (std::size_t p = 0; p < ffn; ++p) {
                                 std::uint8_t* out = bytes.data() + p * g.stride;
                                 std::memcpy(out, S.bundles.data() + order_of(l, p) * src_pi2->geo.stride, 3 * g.part_bytes);
                                 std::memset(out + 3 * g.part_bytes, 0, g.stride - 3 * g.part_bytes);
                               }
                               return;
                             }
                             const model::LayerWeights& L = dense.layers[l];
                             // down [dim rows][ffn cols] -> columns: transpose through floats.
                             std::vector<float> down_t(ffn * c.dim);
                             auto work = [&](std::size_t r0, std::size_t r1) {
                               std::vector<float> row(ffn);
                               for (std::size_t r = r0; r < r1; ++r) {
                                 ops::dequantize_row(type, static_cast<const std::uint8_t*>(L.down.data) + r * L.down.row_bytes(), row.data(), ffn);
                                 for (std::size_t i = 0; i < ffn; ++i) down_t[i * c.dim + r] = row[i];
                               }
                             };
                             auto bundles = [&](std::size_t p0, std::size_t p1) {
                               for (std::size_t p = p0; p < p1; ++p) {
                                 const std::size_t i = order_of(l, p);
                                 make_bundle(g, L.gate, L.up, down_t.data() + i * c.dim, i, bytes.data() + p * g.stride);
                               }
                             };
                             if (pool) {
                               pool->parallel_for(0, c.dim, 64, work);
                               pool->parallel_for(0, ffn, 64, bundles);
                             } else {
                               work(0, c.dim);
                               bundles(0, ffn);
                             }
                           });
    std::vector<float> freq(ffn, 0.0f);
    std::vector<std::int32_t> perm(ffn);
    for (std::size_t p = 0; p < ffn; ++p) {
      const std::size_t i = order_of(l, p);
      if (!spec.freq.empty())
        freq[p] = spec.freq[l].at(i);
      else if (from_pi2)
        freq[p] = src_pi2->layers[l].freq[i];
      perm[p] = from_pi2 ? src_pi2->layers[l].perm[i] : static_cast<std::int32_t>(i);
    }
    std::vector<std::uint8_t> fb(ffn * 4), pb(ffn * 4);
    std::memcpy(fb.data(), freq.data(), fb.size());
    std::memcpy(pb.data(), perm.data(), pb.size());
    w.add_tensor(io::pi2_layer_tensor(l, "ffn_freq"), io::GgmlType::F32, {ffn}, std::move(fb));
    w.add_tensor(io::pi2_layer_tensor(l, "ffn_perm"), io::GgmlType::I32, {ffn}, std::move(pb));

    // Predictors: the new ones, or the source's with rows in the new order.
    PredictorTensors P;
    bool have = false;
    if (!spec.predictors.empty()) {
      P = spec.predictors[l];
      have = true;
    } else if (from_pi2 && src_pi2->layers[l].predictor) {
      const model::LayerPredictor& S = *src_pi2->layers[l].predictor;
      P.rank = S.rank();
      P.relu = S.relu;
      P.w1 = to_floats(S.w1);
      const std::vector<float> gw = to_floats(S.gate);
      std::vector<float> uw;
      if (S.up.data) uw = to_floats(S.up);
      P.gate_w2.resize(ffn * P.rank);
      P.gate_bias.resize(ffn);
      if (S.up.data) {
        P.up_w2.resize(ffn * P.rank);
        P.up_bias.resize(ffn);
      }
      for (std::size_t p = 0; p < ffn; ++p) {
        const std::size_t i = order_of(l, p);
        std::copy_n(gw.begin() + static_cast<std::ptrdiff_t>(i * P.rank), P.rank, P.gate_w2.begin() + static_cast<std::ptrdiff_t>(p * P.rank));
        P.gate_bias[p] = S.gate_bias[i];
        if (S.up.data) {
          std::copy_n(uw.begin() + static_cast<std::ptrdiff_t>(i * P.rank), P.rank, P.up_w2.begin() + static_cast<std::ptrdiff_t>(p * P.rank));
          P.up_bias[p] = S.up_bias[i];
        }
      }
      have = true;
    } else if (!from_pi2 && source.find_tensor(io::pi2_layer_tensor(l, "fc1.weight"))) {
      // PowerInfer's own predictor (fc1 {dim, hidden} -> ReLU -> fc2 {hidden, ffn}): a neuron is
      // predicted active when its output exceeds powerinfer.sparse_threshold (default 0).
      const io::GgufTensorView f1 = source.tensor(io::pi2_layer_tensor(l, "fc1.weight"));
      const io::GgufTensorView f2 = source.tensor(io::pi2_layer_tensor(l, "fc2.weight"));
      if (f1.shape.size() != 2 || f1.shape[0] != c.dim || f2.shape.size() != 2 || f2.shape[0] != f1.shape[1] ||
          f2.shape[1] != ffn)
        throw common::InputError::message(where, "predictor " + io::pi2_layer_tensor(l, "fc1.weight") + " " +
                                                     io::format_shape(f1.shape) + " / fc2 " + io::format_shape(f2.shape) +
                                                     " does not map " + std::to_string(c.dim) + " inputs to " +
                                                     std::to_string(ffn) + " neurons");
      for (const io::GgufTensorView* t : {&f1, &f2})
        if (t->type != io::GgmlType::F32 && t->type != io::GgmlType::F16 && t->type != io::GgmlType::Q8_0 &&
            t->type != io::GgmlType::Q4_0)
          throw common::InputError::message(where, "predictor tensor " + std::string(t->name) + " has type " +
                                                       std::string(io::ggml_type_name(t->type)) +
                                                       ", expected F32, F16, Q8_0 or Q4_0");
      P.rank = f1.shape[1];
      P.relu = true;
      P.w1 = to_floats({f1.type, f1.data.data(), P.rank, c.dim, ops::WeightLayout::gguf});
      const std::vector<float> gw = to_floats({f2.type, f2.data.data(), ffn, P.rank, ops::WeightLayout::gguf});
      P.gate_w2.resize(ffn * P.rank);
      P.gate_bias.assign(ffn, -source.get_f32_or("powerinfer.sparse_threshold", 0.0f));
      for (std::size_t p = 0; p < ffn; ++p)
        std::copy_n(gw.begin() + static_cast<std::ptrdiff_t>(order_of(l, p) * P.rank), P.rank,
                    P.gate_w2.begin() + static_cast<std::ptrdiff_t>(p * P.rank));
      have = true;
    }
    if (have) {
      PWPI_CHECK(P.rank > 0 && P.w1.size() == P.rank * c.dim && P.gate_w2.size() == ffn * P.rank && P.gate_bias.size() == ffn);
      kind = P.relu ? "relu-mlp" : "linear";
      const bool drelu = c.activation == model::FfnActivation::drelu && !P.relu;
      PWPI_CHECK(!drelu || (P.up_w2.size() == ffn * P.rank && P.up_bias.size() == ffn));
      // Q8_0 (half of F16's bytes, the fast integer kernels) when the rank allows it.
      const io::GgmlType pt = P.rank % 32 == 0 && c.dim % 32 == 0 ? io::GgmlType::Q8_0 : io::GgmlType::F16;
      w.add_tensor(io::pi2_layer_tensor(l, "pred_w1"), pt, {c.dim, P.rank}, typed_bytes(pt, P.w1, c.dim));
      w.add_tensor(io::pi2_layer_tensor(l, "pred_gate"), pt, {P.rank, ffn}, typed_bytes(pt, P.gate_w2, P.rank));
      std::vector<std::uint8_t> gb(ffn * 4);
      std::memcpy(gb.data(), P.gate_bias.data(), gb.size());
      w.add_tensor(io::pi2_layer_tensor(l, "pred_gate_b"), io::GgmlType::F32, {ffn}, std::move(gb));
      if (drelu) {
        w.add_tensor(io::pi2_layer_tensor(l, "pred_up"), pt, {P.rank, ffn}, typed_bytes(pt, P.up_w2, P.rank));
        std::vector<std::uint8_t> ub(ffn * 4);
        std::memcpy(ub.data(), P.up_bias.data(), ub.size());
        w.add_tensor(io::pi2_layer_tensor(l, "pred_up_b"), io::GgmlType::F32, {ffn}, std::move(ub));
      }
    }
  }
  if (!kind.empty()) w.set(std::string(io::kPi2PredictorKindKey), kind);
  w.write(out_path);
}

}  // namespace powerinfer2::prep
