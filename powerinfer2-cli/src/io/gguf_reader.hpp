// Reading GGUF files (llama.cpp's model format, versions 2 and 3, little-endian) and
// PowerInfer's sparse variant (magic "PWRI"). The file is memory-mapped read-only; the
// header, metadata and tensor infos are parsed and checked against the file size on open,
// so tensor data views handed out later are always inside the mapping.
//
// Every problem with the file's content is a common::InputError naming the file, the byte
// offset and what was being read; failures of the operating system are common::IoError.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mapped_file.hpp"
#include "io/gguf_types.hpp"
#include "io/gguf_value.hpp"

namespace powerinfer2::io {

/// Hash for maps keyed by std::string that are searched with a std::string_view.
struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIndex = std::unordered_map<std::string, std::size_t, StringHash, std::equal_to<>>;

/// One tensor's entry in the file, as parsed and checked.
struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::uint32_t n_dims = 0;
  std::array<std::uint64_t, kGgmlMaxDims> ne{1, 1, 1, 1};  // ne[0] is the contiguous dimension
  std::uint64_t data_offset = 0;  // from the start of the tensor data section (aligned)
  std::uint64_t file_offset = 0;  // from the start of the file
  std::uint64_t n_elements = 0;
  std::uint64_t size_bytes = 0;

  std::span<const std::uint64_t> shape() const { return {ne.data(), n_dims}; }
};

/// A tensor of an open file: its description and its bytes inside the mapping. Valid while
/// the GgufFile that produced it lives (moving the file keeps views valid).
struct GgufTensorView {
  std::string_view name;
  GgmlType type = GgmlType::F32;
  std::span<const std::uint64_t> shape;  // ne[0] first
  std::uint64_t file_offset = 0;         // bytes from the start of the file
  std::uint64_t size_bytes = 0;
  std::uint64_t n_elements = 0;
  std::span<const std::uint8_t> data;
};

/// "64x512" (ne[0] first, as llama.cpp prints shapes); "scalar" for 0 dimensions.
std::string format_shape(std::span<const std::uint64_t> shape);

/// An open GGUF file. Owns the mapping; non-copyable, movable.
class GgufFile {
 public:
  /// Maps and parses `path`. Throws common::IoError when the file cannot be opened or
  /// mapped, common::InputError when its content is not a valid GGUF file.
  explicit GgufFile(std::string path);
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;
  GgufFile(GgufFile&& other) noexcept = default;
  GgufFile& operator=(GgufFile&& other) noexcept = default;

  const std::string& path() const { return map_.path(); }
  GgufKind kind() const { return kind_; }
  std::uint32_t version() const { return version_; }
  std::uint64_t file_size() const { return map_.size(); }
  std::uint32_t alignment() const { return alignment_; }
  /// Start of the tensor data section in the file (a multiple of alignment()).
  std::uint64_t data_offset() const { return data_offset_; }
  /// The whole file.
  std::span<const std::uint8_t> bytes() const { return map_.bytes(); }

  // --- Metadata ---------------------------------------------------------------------------

  /// All key/value pairs in file order.
  const std::vector<GgufKeyValue>& metadata() const { return kv_; }
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const GgufValue* find(std::string_view key) const;
  /// The value of a key that must be present (InputError naming the file and key if not).
  const GgufValue& get(std::string_view key) const;

  // Typed getters. Integer getters accept any integer type whose value fits the result
  // (a count stored as uint16 or int32 reads as uint32); float getters accept float32 and
  // float64. A missing key or a value of another type is an InputError:
  // "model.gguf: metadata key llama.block_count: expected uint32, got string \"32\"".
  std::uint32_t get_u32(std::string_view key) const;
  std::uint64_t get_u64(std::string_view key) const;
  std::int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;

  /// The same, with a value returned when the key is absent (a wrong type still throws).
  std::uint32_t get_u32_or(std::string_view key, std::uint32_t fallback) const;
  std::uint64_t get_u64_or(std::string_view key, std::uint64_t fallback) const;
  float get_f32_or(std::string_view key, float fallback) const;
  bool get_bool_or(std::string_view key, bool fallback) const;
  std::string get_string_or(std::string_view key, std::string fallback) const;

  /// Arrays. Numeric getters convert element-wise under the rules above.
  const GgufArray& get_array(std::string_view key) const;
  const std::vector<std::string>& get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<std::int32_t> get_i32_array(std::string_view key) const;

  // --- Tensors ----------------------------------------------------------------------------

  std::size_t tensor_count() const { return tensors_.size(); }
  /// All tensors in file order.
  const std::vector<GgufTensorInfo>& tensor_infos() const { return tensors_; }
  GgufTensorView tensor(std::size_t index) const;
  std::optional<GgufTensorView> find_tensor(std::string_view name) const;
  /// A tensor that must exist ("model.gguf: no tensor named 'output.weight'").
  GgufTensorView tensor(std::string_view name) const;
  GgufTensorView tensor(const char* name) const { return tensor(std::string_view(name)); }

 private:
  friend class GgufParser;
  [[noreturn]] void fail_type(std::string_view key, std::string_view expected, const GgufValue& got) const;

  common::MappedFile map_;
  GgufKind kind_ = GgufKind::gguf;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = kGgufDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> kv_;
  StringIndex kv_index_;  // key -> index in kv_
  std::vector<GgufTensorInfo> tensors_;
  StringIndex tensor_index_;  // name -> index in tensors_
};

}  // namespace powerinfer2::io
