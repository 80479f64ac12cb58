// An owning, aligned, fixed-size array of trivially copyable T (SIMD loads, O_DIRECT
// reads need 64-byte or 4 KiB alignment). Move-only; Copy() when a copy is meant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <span>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace common {

template <class T>
class AlignedBuffer {
  static_assert(std::is_trivially_copyable_v<T>, "AlignedBuffer holds plain data");

 public:
  static constexpr std::size_t kDefaultAlignment = 64;

  AlignedBuffer() = default;
  /// `count` elements, zero-filled, the first at a multiple of `alignment` (a power of two).
  explicit AlignedBuffer(std::size_t count, std::size_t alignment = kDefaultAlignment)
      : count_(count), alignment_(alignment) {
    if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment < alignof(T))
      throw std::invalid_argument("AlignedBuffer: alignment must be a power of two >= alignof(T)");
    if (count == 0) return;
    if (count > (SIZE_MAX - alignment) / sizeof(T)) throw std::bad_alloc();
    // aligned_alloc wants a size that is a multiple of the alignment.
    std::size_t bytes = (count * sizeof(T) + alignment - 1) / alignment * alignment;
    data_ = static_cast<T*>(std::aligned_alloc(alignment, bytes));
    if (!data_) throw std::bad_alloc();
    std::memset(static_cast<void*>(data_), 0, bytes);
  }
  ~AlignedBuffer() { std::free(data_); }

  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), count_(std::exchange(o.count_, 0)), alignment_(o.alignment_) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      count_ = std::exchange(o.count_, 0);
      alignment_ = o.alignment_;
    }
    return *this;
  }

  AlignedBuffer Copy() const {
    AlignedBuffer out(count_, alignment_);
    if (count_) std::memcpy(static_cast<void*>(out.data_), data_, count_ * sizeof(T));
    return out;
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return count_; }
  std::size_t size_bytes() const { return count_ * sizeof(T); }
  std::size_t alignment() const { return alignment_; }
  bool empty() const { return count_ == 0; }
  T& operator[](std::size_t i) { return data_[i]; }
  const T& operator[](std::size_t i) const { return data_[i]; }
  T* begin() { return data_; }
  T* end() { return data_ + count_; }
  const T* begin() const { return data_; }
  const T* end() const { return data_ + count_; }
  std::span<T> span() { return {data_, count_}; }
  std::span<const T> span() const { return {data_, count_}; }

 private:
  T* data_ = nullptr;
  std::size_t count_ = 0;
  std::size_t alignment_ = kDefaultAlignment;
};

}  // namespace common
