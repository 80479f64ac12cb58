#include "io/gguf_writer.hpp"

#include <algorithm>
#include <cstring>
#include <ostream>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "io/gguf_reader.hpp"

namespace powerinfer2::io {

namespace {

constexpr std::string_view kAlignmentKey = "general.alignment";

common::Where item_where(std::string item) {
  common::Where w;
  w.item = std::move(item);
  return w;
}

std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

// Little-endian encoding into a byte string (the host is little-endian, see the reader).
class Encoder {
 public:
  template <class T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<std::uint64_t>(s.size());
    out_.append(s);
  }
  void put_type(GgufValueType t) { put(static_cast<std::uint32_t>(t)); }

  void put_value(const GgufValue& v) {
    std::visit(
        [this](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            put_string(x);
          } else if constexpr (std::is_same_v<T, GgufArray>) {
            put_array(x);
          } else if constexpr (std::is_same_v<T, bool>) {
            put<std::uint8_t>(x ? 1 : 0);
          } else {
            put(x);
          }
        },
        v.storage());
  }

  void put_array(const GgufArray& a) {
    put_type(a.element_type());
    put<std::uint64_t>(a.size());
    std::visit(
        [this](const auto& items) {
          using E = typename std::decay_t<decltype(items)>::value_type;
          if constexpr (std::is_same_v<E, std::string>) {
            for (const std::string& s : items) put_string(s);
          } else if constexpr (std::is_same_v<E, GgufArray>) {
            for (const GgufArray& inner : items) put_array(inner);
          } else if constexpr (std::is_same_v<E, bool>) {
            for (bool b : items) put<std::uint8_t>(b ? 1 : 0);
          } else if (!items.empty()) {
            out_.append(reinterpret_cast<const char*>(items.data()), items.size() * sizeof(E));
          }
        },
        a.items);
  }

  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

void check_alignment_value(const GgufValue& v) {
  const std::uint32_t* a = v.get_if<std::uint32_t>();
  if (a == nullptr || *a == 0 || (*a & (*a - 1)) != 0 || *a > (1u << 30))
    throw common::InputError(item_where("metadata key general.alignment"), "a uint32 power of two up to 2^30",
                             v.describe());
}

}  // namespace

void GgufWriter::set(std::string key, GgufValue value) {
  if (key.empty()) throw common::InputError::message(item_where("metadata"), "a key must not be empty");
  if (key == kAlignmentKey) check_alignment_value(value);
  for (GgufKeyValue& kv : kv_) {
    if (kv.key == key) {
      kv.value = std::move(value);
      return;
    }
  }
  kv_.push_back(GgufKeyValue{std::move(key), std::move(value)});
}

bool GgufWriter::has(std::string_view key) const {
  return std::any_of(kv_.begin(), kv_.end(), [&](const GgufKeyValue& kv) { return kv.key == key; });
}

void GgufWriter::erase(std::string_view key) {
  std::erase_if(kv_, [&](const GgufKeyValue& kv) { return kv.key == key; });
}

void GgufWriter::set_alignment(std::uint32_t alignment) { set(std::string(kAlignmentKey), alignment); }

std::uint32_t GgufWriter::alignment() const {
  for (const GgufKeyValue& kv : kv_)
    if (kv.key == kAlignmentKey) return *kv.value.get_if<std::uint32_t>();
  return kGgufDefaultAlignment;
}

void GgufWriter::check_tensor(const std::string& name, GgmlType type, const std::vector<std::uint64_t>& shape,
                              std::size_t data_bytes) const {
  const common::Where w = item_where("tensor " + name);
  if (name.empty()) throw common::InputError::message(w, "a tensor name must not be empty");
  if (name.size() > kGgmlMaxNameBytes)
    throw common::InputError(w, "a name of at most " + std::to_string(kGgmlMaxNameBytes) + " bytes (llama.cpp's limit)",
                             std::to_string(name.size()) + " bytes");
  for (const Tensor& t : tensors_)
    if (t.name == name) throw common::InputError::message(w, "duplicate tensor name");
  if (shape.size() > kGgmlMaxDims)
    throw common::InputError(w, "at most " + std::to_string(kGgmlMaxDims) + " dimensions",
                             std::to_string(shape.size()) + " (shape " + format_shape(shape) + ")");
  const GgmlTypeInfo& info = ggml_type_info(type);
  const std::uint64_t ne0 = shape.empty() ? 1 : shape[0];
  if (ne0 % info.block_size != 0)
    throw common::InputError::message(w, "ne[0] = " + std::to_string(ne0) + " is not a multiple of the block size " +
                                             std::to_string(info.block_size) + " of " + std::string(info.name));
  const auto bytes = ggml_tensor_bytes(type, shape);
  if (!bytes) throw common::InputError::message(w, "shape " + format_shape(shape) + " is too large");
  // The caller computed the bytes for this type and shape: a mismatch is a bug, not input.
  PWPI_CHECK_MSG(*bytes == data_bytes, "tensor " + name + ": " + std::to_string(data_bytes) + " bytes given, " +
                                           std::string(info.name) + " " + format_shape(shape) + " needs " +
                                           std::to_string(*bytes));
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                            std::span<const std::uint8_t> data) {
  check_tensor(name, type, shape, data.size());
  tensors_.push_back(Tensor{std::move(name), type, std::move(shape), data, {}, {}, data.size()});
}

void GgufWriter::add_tensor(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                            std::vector<std::uint8_t>&& data) {
  check_tensor(name, type, shape, data.size());
  const std::uint64_t size = data.size();
  Tensor t{std::move(name), type, std::move(shape), {}, std::move(data), {}, size};
  t.data = t.owned;  // the vector's buffer does not move when the Tensor does
  tensors_.push_back(std::move(t));
}

void GgufWriter::add_tensor_generated(std::string name, GgmlType type, std::vector<std::uint64_t> shape,
                                      TensorFill fill) {
  PWPI_CHECK(fill);
  // check_tensor rejects a shape without a size before it compares the sizes.
  const std::uint64_t size = ggml_tensor_bytes(type, shape).value_or(0);
  check_tensor(name, type, shape, size);
  tensors_.push_back(Tensor{std::move(name), type, std::move(shape), {}, {}, std::move(fill), size});
}

void GgufWriter::add_tensor_f32(std::string name, std::vector<std::uint64_t> shape, std::span<const float> data) {
  add_tensor(std::move(name), GgmlType::F32, std::move(shape),
             std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data.data()), data.size_bytes()));
}

void GgufWriter::write(std::ostream& out) const {
  const std::uint64_t alignment = this->alignment();
  Encoder e;
  e.bytes().append(kind_ == GgufKind::powerinfer ? "PWRI" : "GGUF", 4);
  e.put<std::uint32_t>(kGgufWriteVersion);
  e.put<std::uint64_t>(tensors_.size());
  e.put<std::uint64_t>(kv_.size());
  for (const GgufKeyValue& kv : kv_) {
    e.put_string(kv.key);
    e.put_type(kv.value.type());
    e.put_value(kv.value);
  }
  std::uint64_t offset = 0;  // within the data section
  for (const Tensor& t : tensors_) {
    e.put_string(t.name);
    e.put<std::uint32_t>(static_cast<std::uint32_t>(t.shape.size()));
    for (std::uint64_t ne : t.shape) e.put(ne);
    e.put(static_cast<std::uint32_t>(t.type));
    e.put(offset);
    offset = align_up(offset + t.size_bytes, alignment);
  }
  e.bytes().resize(align_up(e.bytes().size(), alignment), '\0');
  out.write(e.bytes().data(), static_cast<std::streamsize>(e.bytes().size()));

  static const char zeros[64] = {};
  std::vector<std::uint8_t> generated;  // one buffer for every generated tensor
  for (const Tensor& t : tensors_) {
    std::span<const std::uint8_t> data = t.data;
    if (t.fill) {
      if (generated.size() < t.size_bytes) {  // first use: size it for the largest
        std::uint64_t largest = 0;
        for (const Tensor& u : tensors_)
          if (u.fill) largest = std::max(largest, u.size_bytes);
        generated.resize(static_cast<std::size_t>(largest));
      }
      const std::span<std::uint8_t> buffer(generated.data(), static_cast<std::size_t>(t.size_bytes));
      t.fill(buffer);
      data = buffer;
    }
    if (!data.empty()) out.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
    if (!out) return;  // the caller checks the stream (a full disk fails here, not 14 GB later)
    for (std::uint64_t pad = align_up(data.size(), alignment) - data.size(); pad > 0;) {
      const std::uint64_t n = std::min<std::uint64_t>(pad, sizeof zeros);
      out.write(zeros, static_cast<std::streamsize>(n));
      pad -= n;
    }
  }
}

void GgufWriter::write(const std::string& path) const {
  common::AtomicOutput out(path, /*binary=*/true);
  write(out.stream());
  out.commit();
}

}  // namespace powerinfer2::io
