// Writing GGUF v3 files: metadata of every type, tensors of any ggml type, data aligned to
// general.alignment (default 32) and padded with zeros. Files are written to a temporary
// name and renamed when complete, so an error never leaves half a model behind.
//
//   GgufWriter w;
//   w.set("general.architecture", "llama");
//   w.set("llama.block_count", std::uint32_t{5});
//   w.set_array("tokenizer.ggml.tokens", std::vector<std::string>{"<unk>", "<s>"});
//   w.add_tensor("token_embd.weight", GgmlType::F32, {64, 512}, bytes);  // ne[0] first
//   w.write("model.gguf");
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/gguf_types.hpp"
#include "io/gguf_value.hpp"

namespace powerinfer2::io {

class GgufWriter {
 public:
  GgufWriter() = default;
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;
  GgufWriter(GgufWriter&&) = default;
  GgufWriter& operator=(GgufWriter&&) = default;

  /// Sets a key. Keys are written in the order first set; setting a key again replaces its
  /// value in place. The C++ type picks the GGUF type: std::uint32_t{5} is uint32, 5 is
  /// int32, "text" is string, GgufValue::array(...) an array.
  void set(std::string key, GgufValue value);

  /// Sets an array of numbers, bools or strings (std::vector<std::string>).
  template <class T>
  void set_array(std::string key, std::vector<T> items) {
    set(std::move(key), GgufValue::array(std::move(items)));
  }
  template <class T>
  void set_array(std::string key, std::span<const T> items) {
    set_array(std::move(key), std::vector<T>(items.begin(), items.end()));
  }

  bool has(std::string_view key) const;
  /// Removes a key (no effect when absent).
  void erase(std::string_view key);
  const std::vector<GgufKeyValue>& metadata() const { return kv_; }

  /// Sets general.alignment (a power of two): tensor data offsets become multiples of it.
  void set_alignment(std::uint32_t alignment);
  /// general.alignment when set, else 32.
  std::uint32_t alignment() const;

  /// Writes PowerInfer's "PWRI" magic instead of "GGUF" (a sparse model for PowerInfer).
  void set_kind(GgufKind kind) { kind_ = kind; }
  GgufKind kind() const { return kind_; }

  /// Adds a tensor whose bytes the caller keeps alive until write() returns (no copy: a
  /// converter can hand out views into a mapped input). `shape` is ne[0] first, 0 to 4
  /// dims; `data` must hold exactly the bytes the type and shape need.
  /// InputError (item "tensor NAME") for a duplicate name, a name longer than 63 bytes,
  /// more than 4 dims, or ne[0] not a multiple of the type's block size.
  void add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                  std::span<const std::uint8_t> data);
  /// The same, taking ownership of the bytes (pass with std::move).
  void add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                  std::vector<std::uint8_t>&& data);
  /// An F32 tensor from floats the caller keeps alive until write() returns.
  void add_tensor_f32(std::string name, std::vector<std::uint64_t> shape, std::span<const float> data);

  /// Fills a tensor's bytes: receives a buffer of exactly the bytes the type and shape need
  /// and must write every one of them (the buffer is reused and holds older bytes).
  using TensorFill = std::function<void(std::span<std::uint8_t> bytes)>;
  /// A tensor whose bytes are produced while the file is written, so that a model larger
  /// than memory streams out tensor by tensor: write() calls `fill` once, in tensor order,
  /// with one buffer the size of the largest such tensor. Checks as add_tensor.
  void add_tensor_generated(std::string name, GgmlType type, std::vector<std::uint64_t> shape, TensorFill fill);

  std::size_t tensor_count() const { return tensors_.size(); }

  /// Writes the file through common::AtomicOutput (temporary + rename); IoError on failure.
  void write(const std::string& path) const;
  /// Writes the same bytes to a stream (the caller checks the stream's state).
  void write(std::ostream& out) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<std::uint64_t> shape;
    std::span<const std::uint8_t> data;
    std::vector<std::uint8_t> owned;  // data points here when the writer owns the bytes
    TensorFill fill;                  // set for generated tensors (data is then empty)
    std::uint64_t size_bytes = 0;
  };
  void check_tensor(const std::string& name, GgmlType type, const std::vector<std::uint64_t>& shape,
                    std::size_t data_bytes) const;

  std::vector<GgufKeyValue> kv_;
  std::vector<Tensor> tensors_;
  GgufKind kind_ = GgufKind::gguf;
};

}  // namespace powerinfer2::io
