// The ggml type table against ggml's block layouts, and tensor byte sizes.
#include <limits>

#include "io/gguf_types.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
using io::GgmlType;

TEST_CASE("powerinfer2 gguf types: block sizes and bytes match ggml", "[unit]") {
  struct Expected {
    GgmlType type;
    std::uint32_t id, block_size, block_bytes;
    const char* name;
  };
  // sizeof(block_*) from ggml-common.h.
  const Expected table[] = {
      {GgmlType::F32, 0, 1, 4, "F32"},        {GgmlType::F16, 1, 1, 2, "F16"},
      {GgmlType::Q4_0, 2, 32, 18, "Q4_0"},    {GgmlType::Q4_1, 3, 32, 20, "Q4_1"},
      {GgmlType::Q5_0, 6, 32, 22, "Q5_0"},    {GgmlType::Q5_1, 7, 32, 24, "Q5_1"},
      {GgmlType::Q8_0, 8, 32, 34, "Q8_0"},    {GgmlType::Q8_1, 9, 32, 36, "Q8_1"},
      {GgmlType::Q2_K, 10, 256, 84, "Q2_K"},  {GgmlType::Q3_K, 11, 256, 110, "Q3_K"},
      {GgmlType::Q4_K, 12, 256, 144, "Q4_K"}, {GgmlType::Q5_K, 13, 256, 176, "Q5_K"},
      {GgmlType::Q6_K, 14, 256, 210, "Q6_K"}, {GgmlType::Q8_K, 15, 256, 292, "Q8_K"},
      {GgmlType::IQ2_XXS, 16, 256, 66, "IQ2_XXS"}, {GgmlType::IQ2_XS, 17, 256, 74, "IQ2_XS"},
      {GgmlType::IQ3_XXS, 18, 256, 98, "IQ3_XXS"}, {GgmlType::IQ1_S, 19, 256, 50, "IQ1_S"},
      {GgmlType::IQ4_NL, 20, 32, 18, "IQ4_NL"},  {GgmlType::IQ3_S, 21, 256, 110, "IQ3_S"},
      {GgmlType::IQ2_S, 22, 256, 82, "IQ2_S"},   {GgmlType::IQ4_XS, 23, 256, 136, "IQ4_XS"},
      {GgmlType::I8, 24, 1, 1, "I8"},   {GgmlType::I16, 25, 1, 2, "I16"},
      {GgmlType::I32, 26, 1, 4, "I32"}, {GgmlType::I64, 27, 1, 8, "I64"},
      {GgmlType::F64, 28, 1, 8, "F64"}, {GgmlType::IQ1_M, 29, 256, 56, "IQ1_M"},
      {GgmlType::BF16, 30, 1, 2, "BF16"}, {GgmlType::TQ1_0, 34, 256, 54, "TQ1_0"},
      {GgmlType::TQ2_0, 35, 256, 66, "TQ2_0"}, {GgmlType::MXFP4, 39, 32, 17, "MXFP4"},
  };
  REQUIRE(io::ggml_types().size() == std::size(table));
  for (const Expected& e : table) {
    INFO(e.name);
    const io::GgmlTypeInfo* t = io::find_ggml_type(e.id);
    REQUIRE(t != nullptr);
    CHECK(t->type == e.type);
    CHECK(static_cast<std::uint32_t>(t->type) == e.id);
    CHECK(t->name == e.name);
    CHECK(t->block_size == e.block_size);
    CHECK(t->block_bytes == e.block_bytes);
    CHECK(io::ggml_type_from_name(e.name) == e.type);
  }
  for (std::uint32_t retired : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 99u, 0xffffffffu})
    CHECK(io::find_ggml_type(retired) == nullptr);
  CHECK(io::ggml_type_from_name("q4_k") == GgmlType::Q4_K);
  CHECK_FALSE(io::ggml_type_from_name("Q4_2"));
}

TEST_CASE("powerinfer2 gguf types: row and tensor bytes", "[unit]") {
  CHECK(io::ggml_row_bytes(GgmlType::F32, 4096) == 16384u);
  CHECK(io::ggml_row_bytes(GgmlType::Q4_0, 4096) == 4096u / 32 * 18);
  CHECK(io::ggml_row_bytes(GgmlType::Q4_K, 4096) == 4096u / 256 * 144);
  CHECK(io::ggml_row_bytes(GgmlType::Q6_K, 0) == 0u);
  CHECK_FALSE(io::ggml_row_bytes(GgmlType::Q4_0, 33));  // not a whole number of blocks
  CHECK_FALSE(io::ggml_row_bytes(GgmlType::Q4_K, 128));

  const std::vector<std::uint64_t> shape{4096, 11008};
  CHECK(io::ggml_tensor_bytes(GgmlType::Q4_K, shape) == 4096ull / 256 * 144 * 11008);
  CHECK(io::ggml_element_count(shape) == 4096ull * 11008);
  CHECK(io::ggml_element_count(std::vector<std::uint64_t>{}) == 1u);
  CHECK(io::ggml_element_count(std::vector<std::uint64_t>{5, 0, 7}) == 0u);
  CHECK(io::ggml_tensor_bytes(GgmlType::BF16, std::vector<std::uint64_t>{3, 1, 2, 5}) == 60u);

  const std::uint64_t big = std::uint64_t{1} << 32;
  CHECK_FALSE(io::ggml_element_count(std::vector<std::uint64_t>{big, big}));
  CHECK(io::ggml_element_count(std::vector<std::uint64_t>{big, big / 2 - 1}));
  // Elements fit int64, bytes do not.
  CHECK_FALSE(io::ggml_tensor_bytes(GgmlType::F64, std::vector<std::uint64_t>{big, big / 4}));
  CHECK_FALSE(io::ggml_element_count(std::vector<std::uint64_t>{std::numeric_limits<std::uint64_t>::max()}));
}

TEST_CASE("powerinfer2 gguf types: metadata value types", "[unit]") {
  using io::GgufValueType;
  CHECK(static_cast<std::uint32_t>(GgufValueType::FLOAT64) == 12);
  CHECK(io::gguf_value_type_name(GgufValueType::UINT8) == "uint8");
  CHECK(io::gguf_value_type_name(GgufValueType::STRING) == "string");
  CHECK(io::gguf_value_type_name(GgufValueType::FLOAT64) == "float64");
  CHECK(io::is_gguf_value_type(12));
  CHECK_FALSE(io::is_gguf_value_type(13));
}
