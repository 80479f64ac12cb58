#include "gguf_fixtures.hpp"

#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include <catch2/catch.hpp>

namespace fixtures {

using io::GgmlType;
using io::GgufArray;
using io::GgufValue;

std::vector<std::uint8_t> pattern_bytes(std::size_t n, std::uint32_t seed) {
  std::vector<std::uint8_t> out(n);
  std::uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;  // Numerical Recipes LCG
    b = static_cast<std::uint8_t>(x >> 24);
  }
  return out;
}

namespace {

// Bytes of a tensor of this type and shape, filled with a pattern. Float types get finite
// values (a random bit pattern can be NaN, which compares unequal in reference checks).
std::vector<std::uint8_t> tensor_bytes(GgmlType type, const std::vector<std::uint64_t>& shape, std::uint32_t seed) {
  const std::uint64_t n = *io::ggml_tensor_bytes(type, shape);
  std::vector<std::uint8_t> bytes = pattern_bytes(n, seed);
  if (type == GgmlType::F32) {
    for (std::size_t i = 0; i < n / 4; ++i) {
      const float v = static_cast<float>(i) * 0.25f - static_cast<float>(seed);
      std::memcpy(bytes.data() + 4 * i, &v, 4);
    }
  } else if (type == GgmlType::F16 || type == GgmlType::BF16) {
    for (std::size_t i = 1; i < n; i += 2) bytes[i] &= 0x3f;  // exponent well below all-ones
  }
  return bytes;
}

}  // namespace

io::GgufWriter rich_writer(std::uint32_t alignment) {
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set("general.name", "writer golden");
  if (alignment != 0) w.set_alignment(alignment);
  w.set("test.uint8", std::uint8_t{200});
  w.set("test.int8", std::int8_t{-100});
  w.set("test.uint16", std::uint16_t{60000});
  w.set("test.int16", std::int16_t{-30000});
  w.set("test.uint32", std::uint32_t{4000000000u});
  w.set("test.int32", std::int32_t{-2000000000});
  w.set("test.float32", 1.5e-5f);
  w.set("test.bool", true);
  w.set("test.string", "h\xc3\xa9llo \"quoted\"\n\ttab");
  w.set("test.empty_string", "");
  w.set("test.uint64", std::uint64_t{18000000000000000000ull});
  w.set("test.int64", std::int64_t{-9000000000000000000ll});
  w.set("test.float64", 3.141592653589793);
  w.set_array("test.array.uint8", std::vector<std::uint8_t>{0, 1, 255});
  w.set_array("test.array.int8", std::vector<std::int8_t>{-128, 0, 127});
  w.set_array("test.array.uint16", std::vector<std::uint16_t>{0, 65535});
  w.set_array("test.array.int16", std::vector<std::int16_t>{-32768, 32767});
  w.set_array("test.array.uint32", std::vector<std::uint32_t>{1, 4294967295u});
  w.set_array("test.array.int32", std::vector<std::int32_t>{-5, 0, 5});
  w.set_array("test.array.float32", std::vector<float>{0.5f, -2.25f, 1e-7f});
  w.set_array("test.array.bool", std::vector<bool>{true, false, true});
  w.set_array("test.array.string", std::vector<std::string>{"<unk>", "", "\xe2\x96\x81the"});
  w.set_array("test.array.uint64", std::vector<std::uint64_t>{0, std::numeric_limits<std::uint64_t>::max()});
  w.set_array("test.array.int64", std::vector<std::int64_t>{std::numeric_limits<std::int64_t>::min(), 7});
  w.set_array("test.array.float64", std::vector<double>{-0.1, 1e300});
  w.set_array("test.array.empty", std::vector<std::int32_t>{});
  w.set("test.array.nested",
        GgufValue::array(std::vector<GgufArray>{GgufArray{std::vector<std::int32_t>{1, 2}},
                                                GgufArray{std::vector<std::int32_t>{3}},
                                                GgufArray{std::vector<std::int32_t>{}}}));
  w.set("test.array.nested_strings",
        GgufValue::array(std::vector<GgufArray>{GgufArray{std::vector<std::string>{"a", "bc"}}}));

  struct Spec {
    const char* name;
    GgmlType type;
    std::vector<std::uint64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"token_embd.weight", GgmlType::F32, {3, 5}},
      {"blk.0.attn_norm.weight", GgmlType::F32, {7}},
      {"blk.0.ffn_up.weight", GgmlType::F16, {5, 3}},
      {"blk.0.ffn_gate.weight", GgmlType::BF16, {3, 1, 2}},
      {"blk.0.attn_q.weight", GgmlType::Q4_0, {64, 3}},
      {"blk.0.attn_k.weight", GgmlType::Q8_0, {32, 2, 1, 2}},
      {"blk.0.attn_v.weight", GgmlType::Q4_K, {256, 2}},
      {"blk.0.ffn_down.weight", GgmlType::Q6_K, {256}},
      {"blk.0.attn_output.weight", GgmlType::Q5_1, {32, 3}},
      {"blk.0.fc1.weight", GgmlType::IQ4_NL, {32, 1}},
      {"rope_freqs.weight", GgmlType::F64, {3}},
      {"test.i8", GgmlType::I8, {13}},
      {"test.i32", GgmlType::I32, {2, 2}},
  };
  std::uint32_t seed = 1;
  for (const Spec& s : specs) w.add_tensor(s.name, s.type, s.shape, tensor_bytes(s.type, s.shape, seed++));
  return w;
}

io::GgufWriter small_writer() {
  io::GgufWriter w;
  w.set("general.architecture", "llama");
  w.set_array("tokenizer.ggml.tokens", std::vector<std::string>{"a", "bb"});
  w.add_tensor("a.weight", GgmlType::Q4_0, {32}, pattern_bytes(18, 1));
  // The last tensor fills its alignment, so the file ends with data, not padding.
  w.add_tensor("b.weight", GgmlType::F32, {4, 2}, pattern_bytes(32, 2));
  return w;
}

std::string to_bytes(const io::GgufWriter& w) {
  std::ostringstream s;
  w.write(s);
  REQUIRE(s.good());
  return s.str();
}

void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

RawGguf& RawGguf::tensor_info(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type,
                              std::uint64_t offset) {
  str(name).u32(static_cast<std::uint32_t>(ne.size()));
  for (std::uint64_t d : ne) u64(d);
  return u32(type).u64(offset);
}

}  // namespace fixtures
