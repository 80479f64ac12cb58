#include "io/gguf_types.hpp"

#include <array>
#include <cctype>
#include <limits>

#include "common/errors.hpp"

namespace powerinfer2::io {

namespace {

constexpr std::uint32_t QK_K = 256;  // super-block size of the K and most IQ types

// Block sizes and bytes per block as in ggml's type_traits (the block structs in
// ggml-common.h); the comments give each block's layout.
constexpr std::array<GgmlTypeInfo, 32> kTypes{{
    {GgmlType::F32, "F32", 1, 4, false},
    {GgmlType::F16, "F16", 1, 2, false},
    {GgmlType::Q4_0, "Q4_0", 32, 2 + 16, true},             // d, 32 nibbles
    {GgmlType::Q4_1, "Q4_1", 32, 2 + 2 + 16, true},         // d, m, 32 nibbles
    {GgmlType::Q5_0, "Q5_0", 32, 2 + 4 + 16, true},         // d, high bits, nibbles
    {GgmlType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16, true},
    {GgmlType::Q8_0, "Q8_0", 32, 2 + 32, true},             // d, 32 int8
    // d, s as f16 in ggml's current layout (gguf-py still lists the old 2 x f32, 40 bytes);
    // Q8_1 is an activation type that model files do not hold.
    {GgmlType::Q8_1, "Q8_1", 32, 2 + 2 + 32, true},
    {GgmlType::Q2_K, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4, true},
    {GgmlType::Q3_K, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12, true},
    {GgmlType::Q4_K, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12, true},
    {GgmlType::Q5_K, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12, true},
    {GgmlType::Q6_K, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16, true},
    {GgmlType::Q8_K, "Q8_K", QK_K, 4 + QK_K + QK_K / 8, true},  // f32 d, int8 q, int16 bsums
    {GgmlType::IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4, true},
    {GgmlType::IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32, true},
    {GgmlType::IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8, true},
    {GgmlType::IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16, true},
    {GgmlType::IQ4_NL, "IQ4_NL", 32, 2 + 16, true},
    {GgmlType::IQ3_S, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, true},
    {GgmlType::IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16, true},
    {GgmlType::IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, true},
    {GgmlType::I8, "I8", 1, 1, false},
    {GgmlType::I16, "I16", 1, 2, false},
    {GgmlType::I32, "I32", 1, 4, false},
    {GgmlType::I64, "I64", 1, 8, false},
    {GgmlType::F64, "F64", 1, 8, false},
    {GgmlType::IQ1_M, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, true},  // no f16 d
    {GgmlType::BF16, "BF16", 1, 2, false},
    {GgmlType::TQ1_0, "TQ1_0", QK_K, 2 + 4 * 13, true},
    {GgmlType::TQ2_0, "TQ2_0", QK_K, 2 + 64, true},
    {GgmlType::MXFP4, "MXFP4", 32, 1 + 16, true},  // e8m0 scale, 32 fp4
}};

constexpr std::uint32_t kMaxTypeId = 39;

// id -> index in kTypes, or -1.
constexpr std::array<int, kMaxTypeId + 1> make_index() {
  std::array<int, kMaxTypeId + 1> index{};
  for (int& i : index) i = -1;
  for (std::size_t i = 0; i < kTypes.size(); ++i) index[static_cast<std::uint32_t>(kTypes[i].type)] = static_cast<int>(i);
  return index;
}
constexpr std::array<int, kMaxTypeId + 1> kIndex = make_index();

constexpr std::array<std::string_view, kGgufValueTypeCount> kValueTypeNames{
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
    "bool", "string", "array", "uint64", "int64", "float64"};

bool mul_overflows(std::uint64_t a, std::uint64_t b, std::uint64_t limit, std::uint64_t& out) {
  if (a != 0 && b > limit / a) return true;
  out = a * b;
  return false;
}

}  // namespace

std::span<const GgmlTypeInfo> ggml_types() { return kTypes; }

const GgmlTypeInfo* find_ggml_type(std::uint32_t id) {
  if (id > kMaxTypeId || kIndex[id] < 0) return nullptr;
  return &kTypes[static_cast<std::size_t>(kIndex[id])];
}

const GgmlTypeInfo& ggml_type_info(GgmlType type) {
  const GgmlTypeInfo* info = find_ggml_type(static_cast<std::uint32_t>(type));
  PWPI_CHECK_MSG(info != nullptr, "ggml type id " + std::to_string(static_cast<std::uint32_t>(type)));
  return *info;
}

std::string_view ggml_type_name(GgmlType type) { return ggml_type_info(type).name; }

std::optional<GgmlType> ggml_type_from_name(std::string_view name) {
  for (const GgmlTypeInfo& t : kTypes) {
    if (t.name.size() != name.size()) continue;
    bool same = true;
    for (std::size_t i = 0; i < name.size() && same; ++i)
      same = std::toupper(static_cast<unsigned char>(name[i])) == static_cast<unsigned char>(t.name[i]);
    if (same) return t.type;
  }
  return std::nullopt;
}

std::optional<std::uint64_t> ggml_row_bytes(GgmlType type, std::uint64_t ne0) {
  const GgmlTypeInfo& t = ggml_type_info(type);
  if (ne0 % t.block_size != 0) return std::nullopt;
  std::uint64_t bytes = 0;
  if (mul_overflows(ne0 / t.block_size, t.block_bytes, std::numeric_limits<std::int64_t>::max(), bytes))
    return std::nullopt;
  return bytes;
}

std::optional<std::uint64_t> ggml_element_count(std::span<const std::uint64_t> shape) {
  constexpr auto kLimit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t n = 1;
  for (std::uint64_t ne : shape)
    if (ne > kLimit || mul_overflows(n, ne, kLimit, n)) return std::nullopt;
  return n;
}

std::optional<std::uint64_t> ggml_tensor_bytes(GgmlType type, std::span<const std::uint64_t> shape) {
  if (!ggml_element_count(shape)) return std::nullopt;
  std::optional<std::uint64_t> bytes = ggml_row_bytes(type, shape.empty() ? 1 : shape[0]);
  if (!bytes) return std::nullopt;
  constexpr auto kLimit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  for (std::size_t d = 1; d < shape.size(); ++d)
    if (mul_overflows(*bytes, shape[d], kLimit, *bytes)) return std::nullopt;
  return bytes;
}

std::string_view gguf_value_type_name(GgufValueType type) {
  auto id = static_cast<std::uint32_t>(type);
  PWPI_CHECK(is_gguf_value_type(id));
  return kValueTypeNames[id];
}

}  // namespace powerinfer2::io
