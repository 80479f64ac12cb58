#include "prep/quantize_file.hpp"

#include <cstring>
#include <optional>

#include "common/errors.hpp"
#include "io/gguf_reader.hpp"
#include "io/gguf_writer.hpp"
#include "ops/fp16.hpp"
#include "ops/quants.hpp"

namespace powerinfer2::prep {

using io::GgmlType;

namespace {

// ggml_n_dims: dimensions up to the last one larger than 1 (a [n, 1] tensor is 1-D).
std::uint32_t effective_dims(const io::GgufTensorInfo& t) {
  for (std::uint32_t i = t.n_dims; i > 1; --i)
    if (t.ne[i - 1] > 1) return i;
  return 1;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// Why a tensor is copied unchanged, or nullopt when it is quantized.
std::optional<std::string> keep_reason(const io::GgufTensorInfo& t, GgmlType target) {
  if (!ends_with(t.name, "weight")) return "not a weight";
  if (effective_dims(t) < 2) return "1-D";
  // PowerInfer's activation predictors stay as the sparse engine expects them.
  if (ends_with(t.name, ".fc1.weight") || ends_with(t.name, ".fc2.weight")) return "sparsity predictor";
  if (ends_with(t.name, "ffn_gate_inp.weight")) return "expert router";  // as llama.cpp
  if (t.type == target) return "already " + std::string(io::ggml_type_name(target));
  if (t.type != GgmlType::F32 && t.type != GgmlType::F16 && t.type != GgmlType::BF16)
    return std::string(io::ggml_type_name(t.type)) + " is not requantized";
  if (t.ne[0] % ops::kQK != 0)
    return "row length " + std::to_string(t.ne[0]) + " is not a multiple of " + std::to_string(ops::kQK);
  return std::nullopt;
}

// Converts one row of a float tensor (any alignment) to F32.
void row_to_f32(GgmlType type, const std::uint8_t* src, std::size_t n, float* out, std::vector<std::uint16_t>& tmp16) {
  if (type == GgmlType::F32) {
    std::memcpy(out, src, n * sizeof(float));
    return;
  }
  tmp16.resize(n);
  std::memcpy(tmp16.data(), src, n * sizeof(std::uint16_t));
  if (type == GgmlType::F16)
    ops::fp16_to_fp32_row(tmp16.data(), out, n);
  else
    ops::bf16_to_fp32_row(tmp16.data(), out, n);
}

std::vector<std::uint8_t> quantize_tensor(const io::GgufTensorView& t, GgmlType target, common::ThreadPool& pool) {
  const std::size_t n_cols = t.shape[0];
  const std::size_t n_rows = t.n_elements / n_cols;
  const std::size_t in_row = t.size_bytes / n_rows;
  const std::size_t out_row = *io::ggml_row_bytes(target, n_cols);
  std::vector<std::uint8_t> out(n_rows * out_row);
  const std::size_t grain = std::max<std::size_t>(1, (1u << 16) / n_cols);
  pool.parallel_for(0, n_rows, grain, [&](std::size_t r0, std::size_t r1) {
    std::vector<float> row(n_cols);
    std::vector<std::uint16_t> tmp16;
    for (std::size_t r = r0; r < r1; ++r) {
      row_to_f32(t.type, t.data.data() + r * in_row, n_cols, row.data(), tmp16);
      std::uint8_t* dst = out.data() + r * out_row;
      if (target == GgmlType::Q8_0)
        ops::quantize_row_q8_0(row.data(), reinterpret_cast<ops::BlockQ8_0*>(dst), n_cols);
      else
        ops::quantize_row_q4_0(row.data(), reinterpret_cast<ops::BlockQ4_0*>(dst), n_cols);
    }
  });
  return out;
}

}  // namespace

std::uint32_t llama_file_type(GgmlType type) {
  switch (type) {
    case GgmlType::F32: return 0;   // LLAMA_FTYPE_ALL_F32
    case GgmlType::F16: return 1;   // LLAMA_FTYPE_MOSTLY_F16
    case GgmlType::Q4_0: return 2;  // LLAMA_FTYPE_MOSTLY_Q4_0
    case GgmlType::Q8_0: return 7;  // LLAMA_FTYPE_MOSTLY_Q8_0
    case GgmlType::BF16: return 32; // LLAMA_FTYPE_MOSTLY_BF16
    default: break;
  }
  PWPI_CHECK_MSG(false, "no llama.cpp file type for " + std::string(io::ggml_type_name(type)));
  return 0;
}

std::size_t QuantizeReport::n_quantized() const {
  std::size_t n = 0;
  for (const QuantizedTensor& t : tensors) n += t.kept_because.empty() ? 1 : 0;
  return n;
}

QuantizeReport quantize_gguf(const std::string& in_path, const std::string& out_path, GgmlType type,
                             common::ThreadPool& pool) {
  if (type != GgmlType::Q8_0 && type != GgmlType::Q4_0)
    throw common::UsageError("cannot quantize to " + std::string(io::ggml_type_name(type)), "valid types: q8_0, q4_0");
  const io::GgufFile in(in_path);
  io::GgufWriter w;
  w.set_kind(in.kind());
  for (const io::GgufKeyValue& kv : in.metadata()) w.set(kv.key, kv.value);
  w.set("general.file_type", llama_file_type(type));
  w.set("general.quantization_version", std::uint32_t{2});  // GGML_QNT_VERSION

  QuantizeReport report;
  for (std::size_t i = 0; i < in.tensor_count(); ++i) {
    const io::GgufTensorInfo& info = in.tensor_infos()[i];
    const io::GgufTensorView view = in.tensor(i);
    std::vector<std::uint64_t> shape(view.shape.begin(), view.shape.end());
    QuantizedTensor q{info.name, info.type, info.type, info.size_bytes, info.size_bytes, {}};
    if (auto reason = keep_reason(info, type)) {
      q.kept_because = *reason;
      w.add_tensor(info.name, info.type, std::move(shape), view.data);
    } else {
      std::vector<std::uint8_t> bytes = quantize_tensor(view, type, pool);
      q.to = type;
      q.bytes_out = bytes.size();
      w.add_tensor(info.name, type, std::move(shape), std::move(bytes));
    }
    report.bytes_in += q.bytes_in;
    report.bytes_out += q.bytes_out;
    report.tensors.push_back(std::move(q));
  }
  w.write(out_path);
  return report;
}

}  // namespace powerinfer2::prep
