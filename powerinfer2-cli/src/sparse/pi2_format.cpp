#include "sparse/pi2_format.hpp"

#include <algorithm>
#include <cstring>
#include <numeric>

#include "common/errors.hpp"
#include "io/gguf_writer.hpp"
#include "model/weights.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::sparse {

namespace {

std::size_t row_bytes_of(io::GgmlType type, std::size_t n) {
  return ops::WeightMatrix{type, nullptr, 1, n, ops::WeightLayout::gguf}.row_bytes();
}

std::string layer_name(std::size_t l, const char* suffix) { return "blk." + std::to_string(l) + "." + suffix; }

bool is_ffn_tensor(std::string_view name) {
  if (!name.starts_with("blk.")) return false;
  for (const char* s : {".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight", ".ffn_bundles", ".ffn_freq",
                        ".ffn_perm", ".pred_w1", ".pred_gate", ".pred_gate_b", ".pred_up", ".pred_up_b",
                        ".fc1.weight", ".fc2.weight", ".ffn_down_t.weight"})
    if (name.ends_with(s)) return true;
  return false;
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

BundleGeometry bundle_geometry(io::GgmlType type, std::size_t dim, std::size_t ffn, std::size_t cluster_size) {
  if (!ops::is_supported_weight_type(type))
    throw common::UsageError("FFN weights of type " + std::string(io::ggml_type_name(type)) +
                             " cannot be bundled (F32, F16, Q8_0 or Q4_0)");
  if (cluster_size == 0 || ffn % cluster_size != 0)
    throw common::SettingError("cluster-size",
                               std::to_string(cluster_size) + " does not divide the FFN width " + std::to_string(ffn),
                               "give a divisor of " + std::to_string(ffn));
  BundleGeometry g;
  g.type = type;
  g.dim = dim;
  g.ffn = ffn;
  g.cluster_size = cluster_size;
  g.part_bytes = row_bytes_of(type, dim);
  // A cluster (cluster_size bundles) must be a whole number of 4 KiB pages.
  const std::size_t unit = kClusterAlign / std::gcd(cluster_size, kClusterAlign);
  g.stride = (3 * g.part_bytes + unit - 1) / unit * unit;
  return g;
}

void make_bundle(const BundleGeometry& g, const ops::WeightMatrix& gate, const ops::WeightMatrix& up,
                 const float* down_column, std::size_t i, std::uint8_t* out) {
  PWPI_CHECK(gate.layout == ops::WeightLayout::gguf && up.layout == ops::WeightLayout::gguf);
  std::memcpy(out, static_cast<const std::uint8_t*>(gate.data) + i * g.part_bytes, g.part_bytes);
  std::memcpy(out + g.up_offset(), static_cast<const std::uint8_t*>(up.data) + i * g.part_bytes, g.part_bytes);
  ops::quantize_row(g.type, down_column, out + g.down_offset(), g.dim);
  std::memset(out + 3 * g.part_bytes, 0, g.stride - 3 * g.part_bytes);
}

void bundle_part_to_f32(const BundleGeometry& g, const std::uint8_t* bundle, int p, float* out) {
  PWPI_CHECK(p >= 0 && p < 3);
  ops::dequantize_row(g.type, bundle + static_cast<std::size_t>(p) * g.part_bytes, out, g.dim);
}

bool is_pi2(const io::GgufFile& file) { return file.has(kPi2VersionKey); }

Pi2Model load_pi2(const io::GgufFile& file, const model::ModelConfig& c) {
  const common::Where where(file.path());
  const std::uint32_t version = file.get_u32(kPi2VersionKey);
  if (version != 1)
    throw common::InputError(where, std::string(kPi2VersionKey) + " = 1", std::to_string(version),
                             "convert the model again with this version of powerinfer2-cli");
  const auto type = static_cast<io::GgmlType>(file.get_u32(kPi2BundleTypeKey));
  Pi2Model m;
  try {
    m.geo = bundle_geometry(type, c.dim, c.ffn_dim, file.get_u32(kPi2ClusterSizeKey));
  } catch (const common::UsageError& e) {
    throw common::InputError::message(where, e.what());
  }
  if (file.get_u32(kPi2StrideKey) != m.geo.stride)
    throw common::InputError(where, std::string(kPi2StrideKey) + " = " + std::to_string(m.geo.stride),
                             std::to_string(file.get_u32(kPi2StrideKey)));
  m.profiled_tokens = file.get_u64_or(kPi2ProfiledTokensKey, 0);
  auto tensor = [&](const std::string& name, io::GgmlType t, std::vector<std::uint64_t> shape, bool optional = false) {
    const std::optional<io::GgufTensorView> v = file.find_tensor(name);
    if (!v) {
      if (optional) return v;
      throw common::InputError::message(where, "no tensor named '" + name + "'", "a converted model needs it");
    }
    if (v->type != t || !std::equal(v->shape.begin(), v->shape.end(), shape.begin(), shape.end()))
      throw common::InputError::message(where, "tensor " + name + " is " + std::string(io::ggml_type_name(v->type)) +
                                                   " " + io::format_shape(v->shape) + ", expected " +
                                                   std::string(io::ggml_type_name(t)) + " " + io::format_shape(shape));
    return v;
  };
  const std::string kind = file.get_string_or(kPi2PredictorKindKey, "linear");
  if (kind != "linear" && kind != "relu-mlp")
    throw common::InputError(where.with_pointer(std::string(kPi2PredictorKindKey)), "\"linear\" or \"relu-mlp\"", kind);
  const bool relu = kind == "relu-mlp";
  const bool drelu = c.activation == model::FfnActivation::drelu && !relu;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    Pi2Layer L;
    const auto b = tensor(layer_name(l, "ffn_bundles"), io::GgmlType::I8, {m.geo.stride, c.ffn_dim});
    if (b->file_offset % kClusterAlign != 0)
      throw common::InputError::message(where, "tensor " + layer_name(l, "ffn_bundles") + " starts at byte " +
                                                   std::to_string(b->file_offset) + ", not on a 4096-byte boundary");
    L.bundles_offset = b->file_offset;
    L.bundles = b->data;
    const auto f = tensor(layer_name(l, "ffn_freq"), io::GgmlType::F32, {c.ffn_dim});
    L.freq = {reinterpret_cast<const float*>(f->data.data()), c.ffn_dim};
    const auto p = tensor(layer_name(l, "ffn_perm"), io::GgmlType::I32, {c.ffn_dim});
    L.perm = {reinterpret_cast<const std::int32_t*>(p->data.data()), c.ffn_dim};
    std::vector<bool> seen(c.ffn_dim, false);
    for (std::int32_t v : L.perm) {
      if (v < 0 || static_cast<std::size_t>(v) >= c.ffn_dim || seen[static_cast<std::size_t>(v)])
        throw common::InputError::message(where, "tensor " + layer_name(l, "ffn_perm") +
                                                     " is not a permutation of the FFN neurons");
      seen[static_cast<std::size_t>(v)] = true;
    }
    if (const auto w1 = file.find_tensor(layer_name(l, "pred_w1"))) {
      // F16, or Q8_0 when the rank is a multiple of 32; the same type for all of a layer's.
      const io::GgmlType pt = w1->type;
      if (w1->shape.size() != 2 || w1->shape[0] != c.dim || (pt != io::GgmlType::F16 && pt != io::GgmlType::Q8_0))
        throw common::InputError::message(where, "tensor " + layer_name(l, "pred_w1") + " must be F16 or Q8_0 {" +
                                                     std::to_string(c.dim) + ", rank}");
      const std::size_t rank = w1->shape[1];
      LayerPredictor P;
      P.relu = relu;
      P.w1 = {pt, w1->data.data(), rank, c.dim, ops::WeightLayout::gguf};
      const auto g = tensor(layer_name(l, "pred_gate"), pt, {rank, c.ffn_dim});
      P.gate = {pt, g->data.data(), c.ffn_dim, rank, ops::WeightLayout::gguf};
      const auto gb = tensor(layer_name(l, "pred_gate_b"), io::GgmlType::F32, {c.ffn_dim});
      P.gate_bias = {reinterpret_cast<const float*>(gb->data.data()), c.ffn_dim};
      if (drelu) {
        const auto u = tensor(layer_name(l, "pred_up"), pt, {rank, c.ffn_dim});
        P.up = {pt, u->data.data(), c.ffn_dim, rank, ops::WeightLayout::gguf};
        const auto ub = tensor(layer_name(l, "pred_up_b"), io::GgmlType::F32, {c.ffn_dim});
        P.up_bias = {reinterpret_cast<const float*>(ub->data.data()), c.ffn_dim};
      }
      L.predictor = std::move(P);
    }
    if (l > 0 && L.predictor.has_value() != m.layers.front().predictor.has_value())
      throw common::InputError::message(where, "layer " + std::to_string(l) + " has " +
                                                   (L.predictor ? "a predictor" : "no predictor") +
                                                   " unlike layer 0");
    m.layers.push_back(std::move(L));
  }
  return m;
}

void write_pi2(const io::GgufFile& source, const model::ModelConfig& c, const Pi2WriteSpec& spec,
               const std::string& out_path, common::ThreadPool* pool) {
  const common::Where where(source.path());
  if (c.activation == model::FfnActivation::swiglu)
    throw common::UsageError(source.path() + ": a SwiGLU model is never sparse (SiLU is not exactly zero)",
                             "convert a ReGLU or dReLU model (ReLU-LLaMA, ProSparse, TurboSparse)");
  const bool from_pi2 = is_pi2(source);
  std::optional<Pi2Model> src_pi2;
  model::ModelWeights dense;  // dense source: FFN views
  io::GgmlType type;
  if (from_pi2) {
    src_pi2 = load_pi2(source, c);
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
  const BundleGeometry g = bundle_geometry(type, c.dim, c.ffn_dim, cluster);
  const std::size_t ffn = c.ffn_dim, n_layer = c.n_layer;
  PWPI_CHECK(spec.order.empty() || spec.order.size() == n_layer);
  PWPI_CHECK(spec.freq.empty() || spec.freq.size() == n_layer);
  PWPI_CHECK(spec.predictors.empty() || spec.predictors.size() == n_layer);

  io::GgufWriter w;
  for (const io::GgufKeyValue& kv : source.metadata())
    if (kv.key != "general.alignment" && !kv.key.starts_with("powerinfer2.pi2.")) w.set(kv.key, kv.value);
  w.set_alignment(static_cast<std::uint32_t>(kClusterAlign));
  w.set(std::string(kPi2VersionKey), std::uint32_t{1});
  w.set(std::string(kPi2ClusterSizeKey), static_cast<std::uint32_t>(g.cluster_size));
  w.set(std::string(kPi2BundleTypeKey), static_cast<std::uint32_t>(g.type));
  w.set(std::string(kPi2StrideKey), static_cast<std::uint32_t>(g.stride));
  const std::uint64_t profiled = spec.profiled_tokens ? *spec.profiled_tokens : from_pi2 ? src_pi2->profiled_tokens : 0;
  w.set(std::string(kPi2ProfiledTokensKey), profiled);
  if (spec.predictor_recall >= 0.0f) {
    w.set(std::string(kPi2PredictorRecallKey), spec.predictor_recall);
    w.set(std::string(kPi2PredictorPrecisionKey), spec.predictor_precision);
  } else if (from_pi2 && spec.predictors.empty()) {
    for (std::string_view k : {kPi2PredictorRecallKey, kPi2PredictorPrecisionKey})
      if (const io::GgufValue* v = source.find(k)) w.set(std::string(k), *v);
  }

  for (const io::GgufTensorInfo& t : source.tensor_infos()) {
    if (is_ffn_tensor(t.name)) continue;
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
    w.add_tensor_generated(layer_name(l, "ffn_bundles"), io::GgmlType::I8, {g.stride, ffn},
                           [&, l](std::span<std::uint8_t> bytes) {
                             if (from_pi2) {
                               const Pi2Layer& S = src_pi2->layers[l];
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
    w.add_tensor(layer_name(l, "ffn_freq"), io::GgmlType::F32, {ffn}, std::move(fb));
    w.add_tensor(layer_name(l, "ffn_perm"), io::GgmlType::I32, {ffn}, std::move(pb));

    // Predictors: the new ones, or the source's with rows in the new order.
    PredictorTensors P;
    bool have = false;
    if (!spec.predictors.empty()) {
      P = spec.predictors[l];
      have = true;
    } else if (from_pi2 && src_pi2->layers[l].predictor) {
      const LayerPredictor& S = *src_pi2->layers[l].predictor;
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
    } else if (!from_pi2 && source.find_tensor(layer_name(l, "fc1.weight"))) {
      // PowerInfer's own predictor (fc1 {dim, hidden} -> ReLU -> fc2 {hidden, ffn}): a neuron is
      // predicted active when its output exceeds powerinfer.sparse_threshold (default 0).
      const io::GgufTensorView f1 = source.tensor(layer_name(l, "fc1.weight"));
      const io::GgufTensorView f2 = source.tensor(layer_name(l, "fc2.weight"));
      if (f1.shape.size() != 2 || f1.shape[0] != c.dim || f2.shape.size() != 2 || f2.shape[0] != f1.shape[1] ||
          f2.shape[1] != ffn)
        throw common::InputError::message(where, "predictor " + layer_name(l, "fc1.weight") + " " +
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
      w.add_tensor(layer_name(l, "pred_w1"), pt, {c.dim, P.rank}, typed_bytes(pt, P.w1, c.dim));
      w.add_tensor(layer_name(l, "pred_gate"), pt, {P.rank, ffn}, typed_bytes(pt, P.gate_w2, P.rank));
      std::vector<std::uint8_t> gb(ffn * 4);
      std::memcpy(gb.data(), P.gate_bias.data(), gb.size());
      w.add_tensor(layer_name(l, "pred_gate_b"), io::GgmlType::F32, {ffn}, std::move(gb));
      if (drelu) {
        w.add_tensor(layer_name(l, "pred_up"), pt, {P.rank, ffn}, typed_bytes(pt, P.up_w2, P.rank));
        std::vector<std::uint8_t> ub(ffn * 4);
        std::memcpy(ub.data(), P.up_bias.data(), ub.size());
        w.add_tensor(layer_name(l, "pred_up_b"), io::GgmlType::F32, {ffn}, std::move(ub));
      }
    }
  }
  if (!kind.empty()) w.set(std::string(kPi2PredictorKindKey), kind);
  w.write(out_path);
}

}  // namespace powerinfer2::sparse
