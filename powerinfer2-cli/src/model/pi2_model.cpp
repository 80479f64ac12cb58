#include "model/pi2_model.hpp"

#include <algorithm>
#include <numeric>

#include "common/errors.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::model {

namespace {

std::size_t row_bytes_of(io::GgmlType type, std::size_t n) {
  return ops::WeightMatrix{type, nullptr, 1, n, ops::WeightLayout::gguf}.row_bytes();
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
  const std::size_t unit = io::kClusterAlign / std::gcd(cluster_size, io::kClusterAlign);
  g.stride = (3 * g.part_bytes + unit - 1) / unit * unit;
  return g;
}

void bundle_part_to_f32(const BundleGeometry& g, const std::uint8_t* bundle, int p, float* out) {
  PWPI_CHECK(p >= 0 && p < 3);
  ops::dequantize_row(g.type, bundle + static_cast<std::size_t>(p) * g.part_bytes, out, g.dim);
}

Pi2Model load_pi2(const io::GgufFile& file, const ModelConfig& c) {
  const common::Where where(file.path());
  const std::uint32_t version = file.get_u32(io::kPi2VersionKey);
  if (version != 1)
    throw common::InputError(where, std::string(io::kPi2VersionKey) + " = 1", std::to_string(version),
                             "convert the model again with this version of powerinfer2-cli");
  const auto type = static_cast<io::GgmlType>(file.get_u32(io::kPi2BundleTypeKey));
  Pi2Model m;
  try {
    m.geo = bundle_geometry(type, c.dim, c.ffn_dim, file.get_u32(io::kPi2ClusterSizeKey));
  } catch (const common::UsageError& e) {
    throw common::InputError::message(where, e.what());
  }
  if (file.get_u32(io::kPi2StrideKey) != m.geo.stride)
    throw common::InputError(where, std::string(io::kPi2StrideKey) + " = " + std::to_string(m.geo.stride),
                             std::to_string(file.get_u32(io::kPi2StrideKey)));
  m.profiled_tokens = file.get_u64_or(io::kPi2ProfiledTokensKey, 0);
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
  const std::string kind = file.get_string_or(io::kPi2PredictorKindKey, "linear");
  if (kind != "linear" && kind != "relu-mlp")
    throw common::InputError(where.with_pointer(std::string(io::kPi2PredictorKindKey)), "\"linear\" or \"relu-mlp\"", kind);
  const bool relu = kind == "relu-mlp";
  const bool drelu = c.activation == FfnActivation::drelu && !relu;
  for (std::size_t l = 0; l < c.n_layer; ++l) {
    Pi2Layer L;
    const auto b = tensor(io::pi2_layer_tensor(l, "ffn_bundles"), io::GgmlType::I8, {m.geo.stride, c.ffn_dim});
    if (b->file_offset % io::kClusterAlign != 0)
      throw common::InputError::message(where, "tensor " + io::pi2_layer_tensor(l, "ffn_bundles") + " starts at byte " +
                                                   std::to_string(b->file_offset) + ", not on a 4096-byte boundary");
    L.bundles_offset = b->file_offset;
    L.bundles = b->data;
    const auto f = tensor(io::pi2_layer_tensor(l, "ffn_freq"), io::GgmlType::F32, {c.ffn_dim});
    L.freq = {reinterpret_cast<const float*>(f->data.data()), c.ffn_dim};
    const auto p = tensor(io::pi2_layer_tensor(l, "ffn_perm"), io::GgmlType::I32, {c.ffn_dim});
    L.perm = {reinterpret_cast<const std::int32_t*>(p->data.data()), c.ffn_dim};
    std::vector<bool> seen(c.ffn_dim, false);
    for (std::int32_t v : L.perm) {
      if (v < 0 || static_cast<std::size_t>(v) >= c.ffn_dim || seen[static_cast<std::size_t>(v)])
        throw common::InputError::message(where, "tensor " + io::pi2_layer_tensor(l, "ffn_perm") +
                                                     " is not a permutation of the FFN neurons");
      seen[static_cast<std::size_t>(v)] = true;
    }
    if (const auto w1 = file.find_tensor(io::pi2_layer_tensor(l, "pred_w1"))) {
      // F16, or Q8_0 when the rank is a multiple of 32; the same type for all of a layer's.
      const io::GgmlType pt = w1->type;
      if (w1->shape.size() != 2 || w1->shape[0] != c.dim || (pt != io::GgmlType::F16 && pt != io::GgmlType::Q8_0))
        throw common::InputError::message(where, "tensor " + io::pi2_layer_tensor(l, "pred_w1") + " must be F16 or Q8_0 {" +
                                                     std::to_string(c.dim) + ", rank}");
      const std::size_t rank = w1->shape[1];
      LayerPredictor P;
      P.relu = relu;
      P.w1 = {pt, w1->data.data(), rank, c.dim, ops::WeightLayout::gguf};
      const auto g = tensor(io::pi2_layer_tensor(l, "pred_gate"), pt, {rank, c.ffn_dim});
      P.gate = {pt, g->data.data(), c.ffn_dim, rank, ops::WeightLayout::gguf};
      const auto gb = tensor(io::pi2_layer_tensor(l, "pred_gate_b"), io::GgmlType::F32, {c.ffn_dim});
      P.gate_bias = {reinterpret_cast<const float*>(gb->data.data()), c.ffn_dim};
      if (drelu) {
        const auto u = tensor(io::pi2_layer_tensor(l, "pred_up"), pt, {rank, c.ffn_dim});
        P.up = {pt, u->data.data(), c.ffn_dim, rank, ops::WeightLayout::gguf};
        const auto ub = tensor(io::pi2_layer_tensor(l, "pred_up_b"), io::GgmlType::F32, {c.ffn_dim});
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

}  // namespace powerinfer2::model
