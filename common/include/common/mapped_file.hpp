// A whole file mapped read-only into memory: the bytes of a model or checkpoint read in
// place, without a copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace common {

/// Owns the read-only mapping of one regular file; non-copyable, movable. The mapping is
/// private (MAP_PRIVATE + PROT_READ): nothing writes through it to the file.
class MappedFile {
 public:
  MappedFile() = default;
  /// Maps the whole of `path`; an empty file maps to no bytes (data() is nullptr). Throws
  /// IoError naming the path when it cannot be opened, is not a regular file, or cannot be
  /// mapped.
  explicit MappedFile(std::string path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const std::string& path() const { return path_; }
  const std::uint8_t* data() const { return data_; }
  std::uint64_t size() const { return size_; }
  std::span<const std::uint8_t> bytes() const { return {data_, static_cast<std::size_t>(size_)}; }

 private:
  void unmap() noexcept;

  std::string path_;
  const std::uint8_t* data_ = nullptr;  // nullptr for an empty file
  std::uint64_t size_ = 0;
};

}  // namespace common
