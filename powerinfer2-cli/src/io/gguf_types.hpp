// The type tables of the GGUF format: ggml tensor types (numbered exactly as ggml numbers
// them, so ids read from a file are used as they are) and GGUF metadata value types.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace powerinfer2::io {

/// A ggml tensor element type. Values are ggml's `enum ggml_type`; ids ggml has retired
/// (4, 5: Q4_2, Q4_3; 31-33: the old Q4_0_4_4 family; 36-38: IQ4_NL_4_4 family) are absent.
enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

/// What ggml's type_traits say about a type: a tensor row of ne0 elements is stored as
/// ne0 / block_size blocks of block_bytes bytes each (ne0 must be a multiple of block_size).
struct GgmlTypeInfo {
  GgmlType type;
  std::string_view name;     // ggml's name, upper case as in llama.cpp's tools ("Q4_K")
  std::uint32_t block_size;  // elements per block
  std::uint32_t block_bytes; // bytes per block
  bool quantized;
};

/// Every type this reader knows, in id order.
std::span<const GgmlTypeInfo> ggml_types();

/// The type with ggml id `id`, or nullptr when the id is not a known type.
const GgmlTypeInfo* find_ggml_type(std::uint32_t id);

/// The table entry of a valid type.
const GgmlTypeInfo& ggml_type_info(GgmlType type);

std::string_view ggml_type_name(GgmlType type);

/// Looks a type up by name, case-insensitive ("q4_k", "F16").
std::optional<GgmlType> ggml_type_from_name(std::string_view name);

/// Bytes of one row of `ne0` elements; nullopt when ne0 is not a multiple of the block size
/// or the size overflows.
std::optional<std::uint64_t> ggml_row_bytes(GgmlType type, std::uint64_t ne0);

/// Number of elements of a shape (ne[0] first, at most 4 dims; an empty shape is a scalar);
/// nullopt when the product exceeds INT64_MAX (ggml keeps sizes in int64).
std::optional<std::uint64_t> ggml_element_count(std::span<const std::uint64_t> shape);

/// Bytes of a tensor of `shape`; nullopt when ne0 is not a multiple of the block size or a
/// size overflows.
std::optional<std::uint64_t> ggml_tensor_bytes(GgmlType type, std::span<const std::uint64_t> shape);

/// The most dimensions a ggml tensor has (GGML_MAX_DIMS).
inline constexpr std::uint32_t kGgmlMaxDims = 4;

/// Type tag of a GGUF metadata value; the numbers are the file's encoding.
enum class GgufValueType : std::uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

inline constexpr std::uint32_t kGgufValueTypeCount = 13;

/// Whether `id` is one of the GgufValueType values.
constexpr bool is_gguf_value_type(std::uint32_t id) { return id < kGgufValueTypeCount; }

/// Lower-case name as in the spec's gguf_type without prefix: "uint32", "float32", "string".
std::string_view gguf_value_type_name(GgufValueType type);

/// Which magic a file starts with: "GGUF", or PowerInfer's "PWRI" marking a sparse model
/// (predictor tensors and keys) that is otherwise GGUF v3.
enum class GgufKind { gguf, powerinfer };

inline constexpr std::uint32_t kGgufDefaultAlignment = 32;
inline constexpr std::uint32_t kGgufWriteVersion = 3;
/// ggml's GGML_MAX_NAME counts the terminating NUL: longer names do not load in llama.cpp.
inline constexpr std::size_t kGgmlMaxNameBytes = 63;

}  // namespace powerinfer2::io
