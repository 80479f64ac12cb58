// GGUF files for the tests: writers with known content, and a raw byte builder for files
// no correct writer would produce.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf_writer.hpp"

namespace fixtures {

namespace io = powerinfer2::io;

/// Deterministic pseudo-random bytes (golden files must not change between runs).
std::vector<std::uint8_t> pattern_bytes(std::size_t n, std::uint32_t seed);

/// Every metadata type (scalars, strings, arrays of each, an empty array, nested arrays)
/// and tensors of several types with odd shapes. `alignment` 0 leaves the default (32,
/// no general.alignment key). This is the content of tests/data/powerinfer2/writer-golden.gguf.
io::GgufWriter rich_writer(std::uint32_t alignment = 0);

/// Two keys and two small tensors, the last one ending the file without padding: every
/// proper prefix of its bytes is a truncated file.
io::GgufWriter small_writer();

/// The bytes a writer produces.
std::string to_bytes(const io::GgufWriter& w);

/// Writes bytes to a file (tests build corrupt files this way).
void write_bytes(const std::filesystem::path& path, std::string_view bytes);

/// Little-endian GGUF fields appended one by one, for hand-made (often broken) files.
class RawGguf {
 public:
  RawGguf& magic(std::string_view m) { bytes.append(m); return *this; }
  RawGguf& u8(std::uint8_t v) { return put(v); }
  RawGguf& u32(std::uint32_t v) { return put(v); }
  RawGguf& u64(std::uint64_t v) { return put(v); }
  RawGguf& f32(float v) { return put(v); }
  RawGguf& str(std::string_view s) { u64(s.size()); bytes.append(s); return *this; }
  /// "GGUF", version, tensor count, key/value count.
  RawGguf& header(std::uint32_t version, std::uint64_t n_tensors, std::uint64_t n_kv) {
    return magic("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  }
  /// One tensor info: name, dims, ne..., type, offset.
  RawGguf& tensor_info(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type, std::uint64_t offset);
  RawGguf& pad_to(std::size_t alignment) { bytes.resize((bytes.size() + alignment - 1) / alignment * alignment, '\0'); return *this; }
  RawGguf& zeros(std::size_t n) { bytes.append(n, '\0'); return *this; }

  std::string bytes;

 private:
  template <class T>
  RawGguf& put(T v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
};

}  // namespace fixtures
