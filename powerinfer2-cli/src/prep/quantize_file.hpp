// Quantizing a GGUF model to Q8_0 or Q4_0 (`powerinfer2-cli quantize`), as llama.cpp's
// llama-quantize does with --pure: every 2-D weight matrix whose rows are made of whole
// 32-blocks goes to the target type, quantized by ggml's reference quantizer (the same
// bytes); 1-D tensors (norms) stay as they are. All metadata is copied, with
// general.file_type set to llama.cpp's file type and general.quantization_version to 2.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/thread_pool.hpp"
#include "io/gguf_types.hpp"

namespace powerinfer2::prep {

/// llama.cpp's LLAMA_FTYPE_MOSTLY_* for a target type (Q8_0 = 7, Q4_0 = 2, F16 = 1, F32 = 0).
std::uint32_t llama_file_type(io::GgmlType type);

/// What happened to one tensor.
struct QuantizedTensor {
  std::string name;
  io::GgmlType from = io::GgmlType::F32;
  io::GgmlType to = io::GgmlType::F32;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::string kept_because;  // empty when quantized; else why it was copied unchanged
};

struct QuantizeReport {
  std::vector<QuantizedTensor> tensors;  // in file order
  std::uint64_t bytes_in = 0, bytes_out = 0;  // tensor data
  std::size_t n_quantized() const;
};

/// Quantizes `in_path` into `out_path` (written to a temporary name, then renamed).
/// `type` is Q8_0 or Q4_0 (anything else: common::UsageError). Rows are quantized in
/// parallel on `pool`. InputError / IoError for a bad or unreadable input.
QuantizeReport quantize_gguf(const std::string& in_path, const std::string& out_path, io::GgmlType type,
                             common::ThreadPool& pool);

}  // namespace powerinfer2::prep
