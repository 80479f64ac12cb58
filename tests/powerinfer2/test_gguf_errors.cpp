// A corrupt or unsupported file is a common::InputError naming the file, the byte offset
// and what was being read: never a crash, never a huge allocation.
#include "common/errors.hpp"
#include "gguf_fixtures.hpp"
#include "io/gguf_reader.hpp"
#include "test_support.hpp"

namespace io = powerinfer2::io;
using fixtures::RawGguf;

namespace {

constexpr std::uint32_t kString = 8, kArray = 9, kUint32 = 4, kBool = 7;
constexpr std::uint32_t kF32 = 0, kQ4_0 = 2;

struct Opened {
  std::string path;
  std::string error;  // what() of the InputError, empty when the file opened
  std::string hint;
};

// Writes `bytes` to a file and opens it; any exception other than InputError fails.
Opened open_bytes(const testing::TempDir& dir, std::string_view bytes, const std::string& name = "model.gguf") {
  Opened r;
  r.path = (dir / name).string();
  fixtures::write_bytes(r.path, bytes);
  try {
    io::GgufFile f(r.path);
  } catch (const common::InputError& e) {
    r.error = e.what();
    r.hint = e.hint();
  }
  return r;
}

// A valid file with one key and one 4x2 F32 tensor. Layout: header 0-23, key 24-51, type
// 52-55, value 56-68, tensor name 69-95, n_dims 96-99, ne 100-115, type 116-119, offset
// 120-127, data 128-159.
RawGguf one_tensor_file(std::uint32_t type = kF32, std::uint64_t offset = 0, std::uint32_t version = 3) {
  RawGguf g;
  g.header(version, 1, 1).str("general.architecture").u32(kString).str("llama");
  g.tensor_info("blk.0.attn_q.weight", {4, 2}, type, offset).pad_to(32).zeros(32);
  return g;
}

}  // namespace

TEST_CASE("powerinfer2 gguf errors: the hand-made reference file is valid", "[unit]") {
  testing::TempDir dir;
  for (std::uint32_t version : {2u, 3u}) {
    const Opened r = open_bytes(dir, one_tensor_file(kF32, 0, version).bytes);
    REQUIRE(r.error.empty());
    io::GgufFile f(r.path);
    CHECK(f.version() == version);
    CHECK(f.data_offset() == 128);
    CHECK(f.tensor("blk.0.attn_q.weight").file_offset == 128);
  }
}

TEST_CASE("powerinfer2 gguf errors: every prefix of a valid file is an InputError", "[unit]") {
  testing::TempDir dir;
  for (const std::string& bytes : {fixtures::to_bytes(fixtures::small_writer()), one_tensor_file().bytes}) {
    {
      const Opened whole = open_bytes(dir, bytes);
      REQUIRE(whole.error.empty());
    }
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      INFO("prefix of " << n << " of " << bytes.size() << " bytes");
      const Opened r = open_bytes(dir, std::string_view(bytes).substr(0, n));
      REQUIRE_FALSE(r.error.empty());
      CHECK(r.error.rfind(r.path + ": ", 0) == 0);
    }
  }
}

TEST_CASE("powerinfer2 gguf errors: truncation names byte, item and field", "[unit]") {
  testing::TempDir dir;
  const std::string bytes = one_tensor_file().bytes;
  Opened r = open_bytes(dir, bytes.substr(0, 116));
  CHECK(r.error == r.path + ": byte 116: tensor info 0 (blk.0.attn_q.weight): expected 4 bytes for the type, got end of file");
  CHECK(r.hint == "the file is truncated (an interrupted download or copy?)");
  r = open_bytes(dir, bytes.substr(0, 118));
  CHECK(r.error == r.path + ": byte 116: tensor info 0 (blk.0.attn_q.weight): expected 4 bytes for the type, got only "
                            "2 bytes before the end of the file");
  r = open_bytes(dir, bytes.substr(0, 60));
  CHECK(r.error == r.path + ": byte 56: metadata entry 0 (general.architecture): expected 8 bytes for the length of the "
                            "string, got only 4 bytes before the end of the file");
  r = open_bytes(dir, bytes.substr(0, 66));
  CHECK(r.error == r.path + ": byte 64: metadata entry 0 (general.architecture): expected 5 bytes for the string, got "
                            "only 2 bytes before the end of the file");
  r = open_bytes(dir, bytes.substr(0, 150));
  CHECK(r.error == r.path + ": tensor blk.0.attn_q.weight: data (32 bytes at data offset 0, file byte 128) lies past "
                            "the end of the file (150 bytes)");
  r = open_bytes(dir, "");
  CHECK(r.error == r.path + ": byte 0: header: expected 4 bytes for the magic, got end of file");
}

TEST_CASE("powerinfer2 gguf errors: magic and version", "[unit]") {
  testing::TempDir dir;
  std::string bytes = one_tensor_file().bytes;
  bytes[0] = 'X';
  Opened r = open_bytes(dir, bytes);
  CHECK(r.error == r.path + ": byte 0: header: expected the magic \"GGUF\" (or PowerInfer's \"PWRI\"), got \"XGUF\"");
  CHECK(r.hint == "is this a GGUF model file?");
  bytes.replace(0, 4, std::string("\x00\x01\xfe\xff", 4));
  r = open_bytes(dir, bytes);
  CHECK(r.error == r.path + ": byte 0: header: expected the magic \"GGUF\" (or PowerInfer's \"PWRI\"), got bytes 00 01 fe ff");
  bytes.replace(0, 4, "tjgg");
  CHECK(open_bytes(dir, bytes).hint.find("pre-GGUF") != std::string::npos);

  r = open_bytes(dir, one_tensor_file(kF32, 0, 1).bytes);
  CHECK(r.error == r.path + ": byte 4: header: GGUF version 1 is not supported (only versions 2 and 3)");
  r = open_bytes(dir, one_tensor_file(kF32, 0, 4).bytes);
  CHECK(r.error == r.path + ": byte 4: header: expected GGUF version 2 or 3, got version 4");
  r = open_bytes(dir, one_tensor_file(kF32, 0, 0x03000000).bytes);
  CHECK(r.error == r.path + ": byte 4: header: big-endian GGUF files are not supported");

  bytes = one_tensor_file().bytes;
  bytes.replace(0, 4, "PWRI");
  CHECK(open_bytes(dir, bytes).error.empty());
}

TEST_CASE("powerinfer2 gguf errors: tensor infos", "[unit]") {
  testing::TempDir dir;
  Opened r = open_bytes(dir, one_tensor_file(99).bytes);
  CHECK(r.error == r.path + ": byte 116: tensor info 0 (blk.0.attn_q.weight): unsupported tensor type 99");
  r = open_bytes(dir, one_tensor_file(kF32, 64).bytes);
  CHECK(r.error == r.path + ": tensor blk.0.attn_q.weight: data (32 bytes at data offset 64, file byte 192) lies past "
                            "the end of the file (160 bytes)");
  r = open_bytes(dir, one_tensor_file(kF32, 4).bytes);
  CHECK(r.error == r.path + ": tensor blk.0.attn_q.weight: data offset 4 is not a multiple of the alignment 32");
  r = open_bytes(dir, one_tensor_file(kF32, 0xffffffffffffffe0ull).bytes);
  CHECK(r.error.find("lies past the end of the file (160 bytes)") != std::string::npos);

  RawGguf g;
  g.header(3, 1, 0).tensor_info("t", {33, 1}, kQ4_0, 0).pad_to(32).zeros(64);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 33: tensor info 0 (t): ne[0] = 33 is not a multiple of the block size 32 of Q4_0");

  g = {};
  g.header(3, 1, 0).tensor_info("t", {1ull << 32, 1ull << 32}, kF32, 0).pad_to(32);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 33: tensor info 0 (t): shape 4294967296x4294967296 has more than 2^63-1 elements");

  g = {};
  g.header(3, 1, 0).tensor_info("t", {1ull << 40, 1ull << 22}, 28 /* F64 */, 0).pad_to(32);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 33: tensor info 0 (t): shape 1099511627776x4194304 needs more than 2^63-1 bytes");

  g = {};
  g.header(3, 1, 0).tensor_info("t", {1ull << 63}, kF32, 0).pad_to(32);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 37: tensor info 0 (t): expected a dimension below 2^63, got 9223372036854775808");

  g = {};
  g.header(3, 1, 0).tensor_info("t", {1, 1, 1, 1, 1}, kF32, 0).pad_to(32);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 33: tensor info 0 (t): expected at most 4 dimensions, got 5");

  g = {};
  g.header(3, 2, 0).tensor_info("t", {8}, kF32, 0).tensor_info("t", {8}, kF32, 32).pad_to(32).zeros(64);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 57: tensor info 1 (t): duplicate tensor name 't' (tensor infos 0 and 1)");
}

TEST_CASE("powerinfer2 gguf errors: absurd counts fail before allocating", "[unit]") {
  testing::TempDir dir;
  RawGguf g;
  g.header(3, 0, 1ull << 60);
  Opened r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 16: header: expected at most 0 metadata entries in a file of 24 bytes, got "
                            "1152921504606846976");
  g = {};
  g.header(3, ~0ull, 0).zeros(100);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 8: header: expected at most 4 tensors in a file of 124 bytes, got "
                            "18446744073709551615");
  g = {};
  g.header(3, 0, 1).str("k").u32(kArray).u32(kUint32).u64(1ull << 62).zeros(8);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 49: metadata entry 0 (k): expected 4611686018427387904 uint32 elements, got only "
                            "8 bytes before the end of the file");
  g = {};
  g.header(3, 0, 1).str("k").u32(kArray).u32(kUint32).u64(5).zeros(8);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 49: metadata entry 0 (k): expected 5 uint32 elements (20 bytes), got only "
                            "8 bytes before the end of the file");
  g = {};
  g.header(3, 0, 1).u64(1ull << 63).zeros(8);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 32: metadata entry 0: expected 9223372036854775808 bytes for the key, got only 8 "
                            "bytes before the end of the file");
  g = {};
  g.header(3, 0, 1).str("k").u32(kArray).u32(kString).u64(1ull << 62).str("a").u64(~0ull);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 66: metadata entry 0 (k): expected 18446744073709551615 bytes for array element 1, "
                            "got end of file");
}

TEST_CASE("powerinfer2 gguf errors: metadata values", "[unit]") {
  testing::TempDir dir;
  RawGguf g;
  g.header(3, 0, 1).str("k").u32(13).u32(0);
  Opened r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 33: metadata entry 0 (k): expected a value type from 0 to 12, got 13");

  g = {};
  g.header(3, 0, 1).str("k").u32(kBool).u8(2);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 37: metadata entry 0 (k): expected a bool (0 or 1), got 2");

  g = {};
  g.header(3, 0, 2).str("k").u32(kUint32).u32(1).str("k").u32(kUint32).u32(2);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 41: metadata entry 1 (k): duplicate metadata key 'k' (also entry 0)");

  g = {};
  g.header(3, 0, 1).str("k").u32(kArray);
  for (int depth = 0; depth < 20; ++depth) g.u32(kArray).u64(1);
  g.u32(kUint32).u64(0);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": byte 121: metadata entry 0 (k): arrays nested more than 8 deep");

  g = {};
  g.header(3, 0, 1).str("general.alignment").u32(kUint32).u32(48);
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": metadata key general.alignment: expected a power of two (uint32) up to 2^30, got uint32 48");
  g = {};
  g.header(3, 0, 1).str("general.alignment").u32(kString).str("32");
  r = open_bytes(dir, g.bytes);
  CHECK(r.error == r.path + ": metadata key general.alignment: expected a power of two (uint32) up to 2^30, got "
                            "string \"32\"");
  g = {};
  g.header(3, 0, 1).str("general.alignment").u32(kUint32).u32(64);
  io::GgufFile f(open_bytes(dir, g.bytes).path);
  CHECK(f.alignment() == 64u);
  CHECK(f.data_offset() == 64u);
}

TEST_CASE("powerinfer2 gguf errors: operating-system failures are IoError", "[unit]") {
  testing::TempDir dir;
  CHECK_THROWS_WITH(io::GgufFile((dir / "absent.gguf").string()),
                    (dir / "absent.gguf").string() + ": cannot open for reading: No such file or directory");
  CHECK_THROWS_WITH(io::GgufFile(dir.path().string()), dir.path().string() + ": cannot map: it is a directory");
  CHECK_THROWS_AS(io::GgufFile(dir.path().string()), common::IoError);
}

TEST_CASE("powerinfer2 gguf errors: padding after the last tensor is optional", "[unit]") {
  // llama.cpp's mmap loader only needs each tensor's bytes inside the file.
  testing::TempDir dir;
  RawGguf g;
  g.header(3, 1, 0).tensor_info("t", {32}, kQ4_0, 0).pad_to(32).zeros(18);
  const Opened r = open_bytes(dir, g.bytes);
  CHECK(r.error.empty());
}
