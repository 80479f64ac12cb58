// Writer -> reader round trips: every metadata type, tensor types with odd shapes,
// alignments 32 and 64, the PowerInfer magic, and the typed getters.
#include <cstring>
#include <limits>

#include "common/errors.hpp"
#include "gguf_fixtures.hpp"
#include "io/gguf_reader.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
using io::GgmlType;
using io::GgufArray;
using io::GgufFile;
using io::GgufValue;
using io::GgufValueType;

namespace {

GgufFile write_and_open(const io::GgufWriter& w, const testing::TempDir& dir, const std::string& name = "m.gguf") {
  const std::string path = (dir / name).string();
  w.write(path);
  return GgufFile(path);
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const common::InputError& e) {
    return e.what();
  }
  FAIL("expected an InputError");
  return {};
}

}  // namespace

TEST_CASE("powerinfer2 gguf: every metadata type round-trips in order", "[unit]") {
  const std::uint32_t alignment = GENERATE(0u, 64u);
  testing::TempDir dir;
  const io::GgufWriter w = fixtures::rich_writer(alignment);
  const GgufFile f = write_and_open(w, dir);

  CHECK(f.kind() == io::GgufKind::gguf);
  CHECK(f.version() == 3);
  CHECK(f.alignment() == (alignment ? alignment : 32u));
  CHECK(f.data_offset() % f.alignment() == 0);
  REQUIRE(f.metadata().size() == w.metadata().size());
  for (std::size_t i = 0; i < w.metadata().size(); ++i) {
    INFO(w.metadata()[i].key);
    CHECK(f.metadata()[i].key == w.metadata()[i].key);
    CHECK(f.metadata()[i].value == w.metadata()[i].value);
  }
  CHECK(f.get("test.uint8").type() == GgufValueType::UINT8);
  CHECK(f.get("test.float64").type() == GgufValueType::FLOAT64);
  CHECK(f.get_string("test.string") == "h\xc3\xa9llo \"quoted\"\n\ttab");
  CHECK(f.get_string("test.empty_string").empty());
  CHECK(f.get_u64("test.uint64") == 18000000000000000000ull);
  CHECK(f.get_i64("test.int64") == -9000000000000000000ll);
  CHECK(f.get_f32("test.float32") == 1.5e-5f);
  CHECK(f.get_bool("test.bool"));
  CHECK(f.get_array("test.array.empty").size() == 0);
  CHECK(f.get_array("test.array.empty").element_type() == GgufValueType::INT32);
  const GgufArray& nested = f.get_array("test.array.nested");
  REQUIRE(nested.element_type() == GgufValueType::ARRAY);
  const auto* inner = nested.get_if<GgufArray>();
  REQUIRE(inner != nullptr);
  REQUIRE(inner->size() == 3);
  CHECK(*(*inner)[0].get_if<std::int32_t>() == std::vector<std::int32_t>{1, 2});
  CHECK((*inner)[2].size() == 0);
  CHECK(f.get_string_array("test.array.string") == std::vector<std::string>{"<unk>", "", "\xe2\x96\x81the"});
  CHECK(*f.get_array("test.array.bool").get_if<bool>() == std::vector<bool>{true, false, true});
}

TEST_CASE("powerinfer2 gguf: tensors round-trip with their bytes at aligned offsets", "[unit]") {
  const std::uint32_t alignment = GENERATE(32u, 64u, 1u);
  testing::TempDir dir;
  io::GgufWriter w;
  w.set_alignment(alignment);
  struct Spec {
    std::string name;
    GgmlType type;
    std::vector<std::uint64_t> shape;
  };
  const std::vector<Spec> specs = {
      {"odd", GgmlType::F32, {7, 3, 1, 5}},  {"half", GgmlType::F16, {1}},
      {"q4k", GgmlType::Q4_K, {512, 3}},     {"q5", GgmlType::Q5_0, {96}},
      {"empty", GgmlType::F32, {0, 4}},      {"scalar", GgmlType::I64, {}},
      {"q2k", GgmlType::Q2_K, {256, 1, 3}},  {"iq2", GgmlType::IQ2_XXS, {256}},
      {"tq1", GgmlType::TQ1_0, {256, 2}},    {"mx", GgmlType::MXFP4, {64}},
      {"q81", GgmlType::Q8_1, {32, 2}},      {"i16", GgmlType::I16, {9}},
  };
  std::vector<std::vector<std::uint8_t>> data;
  for (std::size_t i = 0; i < specs.size(); ++i)
    data.push_back(fixtures::pattern_bytes(*io::ggml_tensor_bytes(specs[i].type, specs[i].shape),
                                           static_cast<std::uint32_t>(i)));
  for (std::size_t i = 0; i < specs.size(); ++i) w.add_tensor(specs[i].name, specs[i].type, specs[i].shape, data[i]);
  const GgufFile f = write_and_open(w, dir);

  CHECK(f.alignment() == alignment);
  REQUIRE(f.tensor_count() == specs.size());
  for (std::size_t i = 0; i < specs.size(); ++i) {
    INFO(specs[i].name);
    const io::GgufTensorView t = f.tensor(specs[i].name);
    CHECK(t.name == specs[i].name);
    CHECK(t.type == specs[i].type);
    CHECK(std::vector<std::uint64_t>(t.shape.begin(), t.shape.end()) == specs[i].shape);
    CHECK(t.size_bytes == data[i].size());
    CHECK(t.n_elements == *io::ggml_element_count(specs[i].shape));
    CHECK(t.file_offset % alignment == 0);
    CHECK(t.data.size() == data[i].size());
    CHECK(std::equal(t.data.begin(), t.data.end(), data[i].begin(), data[i].end()));
    CHECK(f.tensor_infos()[i].name == specs[i].name);  // file order is insertion order
  }
  CHECK(f.tensor("scalar").shape.empty());
  CHECK(io::format_shape(f.tensor("odd").shape) == "7x3x1x5");
  CHECK(io::format_shape(f.tensor("scalar").shape) == "scalar");
  CHECK_FALSE(f.find_tensor("missing"));
  CHECK(error_of([&] { (void)f.tensor("missing"); }) == f.path() + ": no tensor named 'missing'");
  // Padding after the last tensor: the file ends on an aligned offset.
  CHECK(f.file_size() % alignment == 0);
}

TEST_CASE("powerinfer2 gguf: the PWRI magic and an empty file", "[unit]") {
  testing::TempDir dir;
  io::GgufWriter w = fixtures::small_writer();
  w.set_kind(io::GgufKind::powerinfer);
  const GgufFile f = write_and_open(w, dir);
  CHECK(f.kind() == io::GgufKind::powerinfer);
  CHECK(f.version() == 3);
  CHECK(f.bytes().size() == f.file_size());
  CHECK(std::memcmp(f.bytes().data(), "PWRI", 4) == 0);

  const GgufFile empty = write_and_open(io::GgufWriter{}, dir, "empty.gguf");
  CHECK(empty.metadata().empty());
  CHECK(empty.tensor_count() == 0);
  CHECK(empty.data_offset() == 32);
}

TEST_CASE("powerinfer2 gguf: the file object moves, its views stay valid", "[unit]") {
  static_assert(!std::is_copy_constructible_v<GgufFile> && !std::is_copy_assignable_v<GgufFile>);
  static_assert(std::is_nothrow_move_constructible_v<GgufFile> && std::is_nothrow_move_assignable_v<GgufFile>);
  testing::TempDir dir;
  GgufFile a = write_and_open(fixtures::small_writer(), dir);
  const io::GgufTensorView before = a.tensor("a.weight");
  GgufFile b(std::move(a));
  const io::GgufTensorView after = b.tensor("a.weight");
  CHECK(before.data.data() == after.data.data());
  CHECK(before.name == "a.weight");
  GgufFile c = write_and_open(io::GgufWriter{}, dir, "other.gguf");
  c = std::move(b);
  CHECK(c.tensor("b.weight").type == GgmlType::F32);
  CHECK(c.get_string("general.architecture") == "llama");
}

TEST_CASE("powerinfer2 gguf: typed getters widen integers and name file, key and types", "[unit]") {
  testing::TempDir dir;
  io::GgufWriter w;
  w.set("u16", std::uint16_t{7});
  w.set("i32", std::int32_t{-5});
  w.set("i32_pos", std::int32_t{11});
  w.set("u64_big", std::uint64_t{5000000000ull});
  w.set("f64", 0.25);
  w.set("s", "32");
  w.set_array("ints", std::vector<std::uint16_t>{1, 2, 3});
  w.set_array("neg", std::vector<std::int64_t>{4, -1});
  w.set_array("f64s", std::vector<double>{0.5, 1.5});
  w.set_array("strs", std::vector<std::string>{"x"});
  const GgufFile f = write_and_open(w, dir);
  const std::string p = f.path();

  CHECK(f.get_u32("u16") == 7u);
  CHECK(f.get_i64("u16") == 7);
  CHECK(f.get_u32("i32_pos") == 11u);
  CHECK(f.get_i64("i32") == -5);
  CHECK(f.get_u64("u64_big") == 5000000000ull);
  CHECK(f.get_f32("f64") == 0.25f);
  CHECK(f.get_u32_or("absent", 9) == 9u);
  CHECK(f.get_string_or("absent", "d") == "d");
  CHECK(f.get_f32_or("absent", 2.0f) == 2.0f);
  CHECK(f.get_bool_or("absent", true));
  CHECK(f.get_i32_array("ints") == std::vector<std::int32_t>{1, 2, 3});
  CHECK(f.get_f32_array("f64s") == std::vector<float>{0.5f, 1.5f});

  CHECK(error_of([&] { (void)f.get_u32("s"); }) == p + ": metadata key s: expected uint32, got string \"32\"");
  CHECK(error_of([&] { (void)f.get_u32("i32"); }) == p + ": metadata key i32: expected uint32, got int32 -5");
  CHECK(error_of([&] { (void)f.get_u32("u64_big"); }) ==
        p + ": metadata key u64_big: expected uint32, got uint64 5000000000");
  CHECK(error_of([&] { (void)f.get_i64("f64"); }) == p + ": metadata key f64: expected int64, got float64 0.25");
  CHECK(error_of([&] { (void)f.get_f32("s"); }) == p + ": metadata key s: expected float32, got string \"32\"");
  CHECK(error_of([&] { (void)f.get_string("u16"); }) == p + ": metadata key u16: expected string, got uint16 7");
  CHECK(error_of([&] { (void)f.get_bool("u16"); }) == p + ": metadata key u16: expected bool, got uint16 7");
  CHECK(error_of([&] { (void)f.get_u32("llama.block_count"); }) ==
        p + ": metadata key llama.block_count: expected uint32, got nothing (the file has no such key)");
  CHECK(error_of([&] { (void)f.get("nope"); }) == p + ": metadata key nope: missing (the file has no such key)");
  CHECK(error_of([&] { (void)f.get_u32_or("s", 1); }) == p + ": metadata key s: expected uint32, got string \"32\"");
  CHECK(error_of([&] { (void)f.get_array("s"); }) == p + ": metadata key s: expected an array, got string \"32\"");
  CHECK(error_of([&] { (void)f.get_string_array("ints"); }) ==
        p + ": metadata key ints: expected an array of string, got an array of uint16");
  CHECK(error_of([&] { (void)f.get_f32_array("strs"); }) ==
        p + ": metadata key strs: expected an array of float32, got an array of string");
  CHECK(error_of([&] { (void)f.get_i32_array("f64s"); }) ==
        p + ": metadata key f64s: expected an array of int32, got float64 0.5 at index 0");
}

TEST_CASE("powerinfer2 gguf writer: keys keep insertion order, set replaces in place", "[unit]") {
  io::GgufWriter w;
  w.set("b", std::uint32_t{1});
  w.set("a", "x");
  w.set("b", std::int8_t{-3});
  CHECK(w.has("a"));
  REQUIRE(w.metadata().size() == 2);
  CHECK(w.metadata()[0].key == "b");
  CHECK(w.metadata()[0].value == GgufValue(std::int8_t{-3}));
  w.erase("b");
  CHECK_FALSE(w.has("b"));
  CHECK(w.alignment() == 32u);
  w.set_alignment(128);
  CHECK(w.alignment() == 128u);
  CHECK(w.metadata().back().value == GgufValue(std::uint32_t{128}));
}

TEST_CASE("powerinfer2 gguf writer: rejects what llama.cpp could not load", "[unit]") {
  io::GgufWriter w;
  const std::vector<std::uint8_t> q4(18);
  w.add_tensor("t", GgmlType::Q4_0, {32}, q4);
  CHECK(error_of([&] { w.add_tensor("t", GgmlType::Q4_0, {32}, q4); }) == "tensor t: duplicate tensor name");
  CHECK(error_of([&] { w.add_tensor("u", GgmlType::Q4_0, {16, 2}, std::vector<std::uint8_t>(18)); }) ==
        "tensor u: ne[0] = 16 is not a multiple of the block size 32 of Q4_0");
  CHECK(error_of([&] { w.add_tensor("v", GgmlType::F32, {1, 1, 1, 1, 1}, std::vector<std::uint8_t>(4)); }) ==
        "tensor v: expected at most 4 dimensions, got 5 (shape 1x1x1x1x1)");
  CHECK(error_of([&] { w.add_tensor(std::string(64, 'n'), GgmlType::F32, {1}, std::vector<std::uint8_t>(4)); }) ==
        "tensor " + std::string(64, 'n') + ": expected a name of at most 63 bytes (llama.cpp's limit), got 64 bytes");
  CHECK(error_of([&] { w.set("general.alignment", std::uint32_t{48}); }) ==
        "metadata key general.alignment: expected a uint32 power of two up to 2^30, got uint32 48");
  CHECK(error_of([&] { w.set("general.alignment", 64); }) ==
        "metadata key general.alignment: expected a uint32 power of two up to 2^30, got int32 64");
  // Wrong byte count for the type and shape is a bug in the caller.
  CHECK_THROWS_AS(w.add_tensor("w", GgmlType::F32, {3}, std::vector<std::uint8_t>(8)), common::InternalError);
  CHECK(w.tensor_count() == 1);
}

TEST_CASE("powerinfer2 gguf writer: an error leaves no file behind", "[unit]") {
  testing::TempDir dir;
  const auto missing_dir = dir / "no-such-dir" / "m.gguf";
  CHECK_THROWS_AS(fixtures::small_writer().write(missing_dir.string()), common::IoError);
  fixtures::small_writer().write((dir / "m.gguf").string());
  std::size_t files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);  // no temporary left beside it
}
