#include "io/gguf_reader.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <utility>

#include "common/errors.hpp"

namespace powerinfer2::io {

static_assert(std::endian::native == std::endian::little,
              "GGUF is read by copying little-endian bytes; a big-endian host needs byte swaps");

namespace {

constexpr std::uint64_t kMaxArrayDepth = 8;  // spec allows nesting; real files use none
// The least bytes an encoded item takes: a count the bytes left cannot hold is corrupt.
constexpr std::uint64_t kMinKvBytes = 8 + 4 + 1;          // key length, type, 1-byte value
constexpr std::uint64_t kMinTensorInfoBytes = 8 + 4 + 4 + 8;  // name length, n_dims, type, offset

std::string plural(std::uint64_t n, std::string_view word) {
  return std::to_string(n) + " " + std::string(word) + (n == 1 ? "" : "s");
}

// Prints 4 magic bytes as text when printable, else as hex.
std::string describe_magic(const std::uint8_t* m) {
  bool printable = true;
  for (int i = 0; i < 4; ++i) printable = printable && m[i] >= 0x20 && m[i] < 0x7f;
  if (printable) return "\"" + std::string(reinterpret_cast<const char*>(m), 4) + "\"";
  static const char* hex = "0123456789abcdef";
  std::string out = "bytes";
  for (int i = 0; i < 4; ++i) {
    out += ' ';
    out += hex[m[i] >> 4];
    out += hex[m[i] & 15];
  }
  return out;
}

}  // namespace

// Reads the file front to back with bounds checks; every failure names the byte offset at
// which the failing field starts and the item (header, metadata entry, tensor info) it
// belongs to.
class GgufParser {
 public:
  explicit GgufParser(GgufFile& f) : f_(f) {}

  void parse() {
    parse_header();
    for (std::uint64_t i = 0; i < n_kv_; ++i) parse_kv(i);
    item_ = "header";
    check_count(counts_at_, n_tensors_, kMinTensorInfoBytes, "tensors");
    for (std::uint64_t i = 0; i < n_tensors_; ++i) parse_tensor_info(i);
    set_alignment();
    f_.data_offset_ = align_up(pos_, f_.alignment_);
    for (GgufTensorInfo& t : f_.tensors_) place_tensor(t);
  }

 private:
  [[noreturn]] void fail(std::uint64_t at, std::string expected, std::string got, std::string hint = {}) const {
    throw common::InputError(where(at), std::move(expected), std::move(got), std::move(hint));
  }
  [[noreturn]] void fail_message(std::uint64_t at, std::string text, std::string hint = {}) const {
    throw common::InputError::message(where(at), std::move(text), std::move(hint));
  }
  common::Where where(std::uint64_t at) const {
    common::Where w;
    w.file = f_.path();
    w.byte_offset = static_cast<std::int64_t>(at);
    w.item = item_;
    return w;
  }

  std::uint64_t remaining() const { return f_.map_.size() - pos_; }

  // Fails unless `n` bytes are left; `what` names the field ("the key").
  void need(std::uint64_t n, std::string_view what) const {
    if (n <= remaining()) return;
    std::string got = remaining() == 0
                          ? "end of file"
                          : "only " + plural(remaining(), "byte") + " before the end of the file";
    fail(pos_, plural(n, "byte") + " for " + std::string(what), got,
         "the file is truncated (an interrupted download or copy?)");
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, f_.map_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  // u64 length + bytes, no terminator.
  std::string read_string(std::string_view what) {
    const auto length = read<std::uint64_t>("the length of " + std::string(what));
    need(length, what);
    std::string s(reinterpret_cast<const char*>(f_.map_.data() + pos_), static_cast<std::size_t>(length));
    pos_ += length;
    return s;
  }

  void parse_header() {
    item_ = "header";
    need(4, "the magic");
    const std::uint8_t* m = f_.map_.data();
    if (std::memcmp(m, "GGUF", 4) == 0) {
      f_.kind_ = GgufKind::gguf;
    } else if (std::memcmp(m, "PWRI", 4) == 0) {
      f_.kind_ = GgufKind::powerinfer;
    } else {
      std::string hint = "is this a GGUF model file?";
      if (std::memcmp(m, "lmgg", 4) == 0 || std::memcmp(m, "fmgg", 4) == 0 || std::memcmp(m, "tjgg", 4) == 0)
        hint = "this is a pre-GGUF llama.cpp model (ggml/ggmf/ggjt); convert it to GGUF with llama.cpp";
      fail(0, "the magic \"GGUF\" (or PowerInfer's \"PWRI\")", describe_magic(m), hint);
    }
    pos_ = 4;
    const std::uint64_t version_at = pos_;
    const auto version = read<std::uint32_t>("the version");
    if (version == 1)
      fail_message(version_at, "GGUF version 1 is not supported (only versions 2 and 3)",
                   "version 1 predates 64-bit counts; convert the model again with a current llama.cpp");
    if (version != 2 && version != 3) {
      const std::uint32_t swapped = __builtin_bswap32(version);
      if (swapped >= 1 && swapped <= 3)
        fail_message(version_at, "big-endian GGUF files are not supported",
                     "convert the model on a little-endian machine, or without --bigendian");
      fail(version_at, "GGUF version 2 or 3", "version " + std::to_string(version),
           "the file may come from a newer llama.cpp than this reader knows");
    }
    f_.version_ = version;

    counts_at_ = pos_;
    n_tensors_ = read<std::uint64_t>("the tensor count");
    n_kv_ = read<std::uint64_t>("the metadata key/value count");
    check_count(counts_at_ + 8, n_kv_, kMinKvBytes, "metadata entries");
  }

  // A count that the bytes left could not hold is corrupt: fail before looping or
  // allocating for it. (Tensor infos are checked after the metadata, against what is left
  // then, so that a file cut inside the metadata reports the place it was cut.)
  void check_count(std::uint64_t at, std::uint64_t n, std::uint64_t min_bytes, std::string_view what) const {
    const std::uint64_t max = remaining() / min_bytes;
    if (n > max)
      fail(at,
           "at most " + std::to_string(max) + " " + std::string(what) + " in a file of " +
               plural(f_.map_.size(), "byte"),
           std::to_string(n), "the file is truncated, or its header is corrupt");
  }

  void parse_kv(std::uint64_t i) {
    const std::uint64_t at = pos_;
    item_ = "metadata entry " + std::to_string(i);
    std::string key = read_string("the key");
    item_ += " (" + key + ")";
    const GgufValueType type = read_value_type("the value type");
    GgufValue value = read_value(type, 0);
    if (auto it = f_.kv_index_.find(key); it != f_.kv_index_.end())
      fail_message(at, "duplicate metadata key '" + key + "' (also entry " + std::to_string(it->second) + ")");
    f_.kv_index_.emplace(key, f_.kv_.size());
    f_.kv_.push_back(GgufKeyValue{std::move(key), std::move(value)});
  }

  GgufValueType read_value_type(std::string_view what) {
    const std::uint64_t at = pos_;
    const auto id = read<std::uint32_t>(what);
    if (!is_gguf_value_type(id))
      fail(at, "a value type from 0 to " + std::to_string(kGgufValueTypeCount - 1),
           std::to_string(id));
    return static_cast<GgufValueType>(id);
  }

  bool read_bool(std::string_view what) {
    const std::uint64_t at = pos_;
    const auto b = read<std::uint8_t>(what);
    if (b > 1) fail(at, "a bool (0 or 1)", std::to_string(b));
    return b == 1;
  }

  GgufValue read_value(GgufValueType type, std::uint64_t depth) {
    switch (type) {
      case GgufValueType::UINT8: return read<std::uint8_t>("the uint8 value");
      case GgufValueType::INT8: return read<std::int8_t>("the int8 value");
      case GgufValueType::UINT16: return read<std::uint16_t>("the uint16 value");
      case GgufValueType::INT16: return read<std::int16_t>("the int16 value");
      case GgufValueType::UINT32: return read<std::uint32_t>("the uint32 value");
      case GgufValueType::INT32: return read<std::int32_t>("the int32 value");
      case GgufValueType::FLOAT32: return read<float>("the float32 value");
      case GgufValueType::BOOL: return read_bool("the bool value");
      case GgufValueType::STRING: return read_string("the string");
      case GgufValueType::ARRAY: return read_array(depth);
      case GgufValueType::UINT64: return read<std::uint64_t>("the uint64 value");
      case GgufValueType::INT64: return read<std::int64_t>("the int64 value");
      case GgufValueType::FLOAT64: return read<double>("the float64 value");
    }
    common::check_failed("value type checked on read", __FILE__, __LINE__, {});
  }

  GgufArray read_array(std::uint64_t depth) {
    const std::uint64_t type_at = pos_;
    const GgufValueType elem = read_value_type("the array element type");
    if (elem == GgufValueType::ARRAY && depth + 1 >= kMaxArrayDepth)
      fail_message(type_at, "arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
    const auto n = read<std::uint64_t>("the array length");
    switch (elem) {
      case GgufValueType::UINT8: return read_numbers<std::uint8_t>(n);
      case GgufValueType::INT8: return read_numbers<std::int8_t>(n);
      case GgufValueType::UINT16: return read_numbers<std::uint16_t>(n);
      case GgufValueType::INT16: return read_numbers<std::int16_t>(n);
      case GgufValueType::UINT32: return read_numbers<std::uint32_t>(n);
      case GgufValueType::INT32: return read_numbers<std::int32_t>(n);
      case GgufValueType::FLOAT32: return read_numbers<float>(n);
      case GgufValueType::UINT64: return read_numbers<std::uint64_t>(n);
      case GgufValueType::INT64: return read_numbers<std::int64_t>(n);
      case GgufValueType::FLOAT64: return read_numbers<double>(n);
      case GgufValueType::BOOL: {
        need_elements(n, 1, elem);
        std::vector<bool> v(static_cast<std::size_t>(n));
        for (std::uint64_t k = 0; k < n; ++k) v[k] = read_bool(element(k));
        return GgufArray{std::move(v)};
      }
      case GgufValueType::STRING: {
        std::vector<std::string> v;
        v.reserve(capacity_for(n, 8));  // a corrupt length fails at the end of the file
        for (std::uint64_t k = 0; k < n; ++k) v.push_back(read_string(element(k)));
        return GgufArray{std::move(v)};
      }
      case GgufValueType::ARRAY: {
        std::vector<GgufArray> v;
        v.reserve(capacity_for(n, 4 + 8));
        for (std::uint64_t k = 0; k < n; ++k) v.push_back(read_array(depth + 1));
        return GgufArray{std::move(v)};
      }
    }
    common::check_failed("element type checked on read", __FILE__, __LINE__, {});
  }

  static std::string element(std::uint64_t k) { return "array element " + std::to_string(k); }

  // Fails unless n elements of `size` bytes are left, without overflowing n * size.
  void need_elements(std::uint64_t n, std::uint64_t size, GgufValueType elem) const {
    if (n <= remaining() / size) return;
    std::string expected = std::to_string(n) + " " + std::string(gguf_value_type_name(elem)) + " elements";
    if (n <= std::numeric_limits<std::uint64_t>::max() / size) expected += " (" + plural(n * size, "byte") + ")";
    fail(pos_, expected,
         remaining() == 0 ? "end of file" : "only " + plural(remaining(), "byte") + " before the end of the file",
         "the file is truncated (an interrupted download or copy?)");
  }

  // Elements worth reserving: no more than the bytes left could hold.
  std::size_t capacity_for(std::uint64_t n, std::uint64_t min_bytes) const {
    return static_cast<std::size_t>(std::min(n, remaining() / min_bytes));
  }

  template <class T>
  GgufArray read_numbers(std::uint64_t n) {
    need_elements(n, sizeof(T), GgufValue(T{}).type());
    std::vector<T> v(static_cast<std::size_t>(n));
    if (n > 0) std::memcpy(v.data(), f_.map_.data() + pos_, n * sizeof(T));
    pos_ += n * sizeof(T);
    return GgufArray{std::move(v)};
  }

  void parse_tensor_info(std::uint64_t i) {
    const std::uint64_t at = pos_;
    item_ = "tensor info " + std::to_string(i);
    GgufTensorInfo t;
    t.name = read_string("the name");
    item_ += " (" + t.name + ")";
    const std::uint64_t dims_at = pos_;
    t.n_dims = read<std::uint32_t>("the number of dimensions");
    if (t.n_dims > kGgmlMaxDims)
      fail(dims_at, "at most " + std::to_string(kGgmlMaxDims) + " dimensions", std::to_string(t.n_dims));
    for (std::uint32_t d = 0; d < t.n_dims; ++d) {
      const std::uint64_t ne_at = pos_;
      t.ne[d] = read<std::uint64_t>("dimension " + std::to_string(d));
      if (t.ne[d] > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        fail(ne_at, "a dimension below 2^63", std::to_string(t.ne[d]));
    }
    const std::uint64_t type_at = pos_;
    const auto type_id = read<std::uint32_t>("the type");
    const GgmlTypeInfo* type = find_ggml_type(type_id);
    if (type == nullptr)
      fail_message(type_at, "unsupported tensor type " + std::to_string(type_id),
                   "the file may come from a newer llama.cpp than this reader knows");
    t.type = type->type;
    t.data_offset = read<std::uint64_t>("the data offset");

    const auto n_elements = ggml_element_count(t.shape());
    if (!n_elements)
      fail_message(dims_at, "shape " + format_shape(t.shape()) + " has more than 2^63-1 elements");
    t.n_elements = *n_elements;
    if (t.ne[0] % type->block_size != 0)
      fail_message(dims_at, "ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the block size " +
                                std::to_string(type->block_size) + " of " + std::string(type->name));
    const auto bytes = ggml_tensor_bytes(t.type, t.shape());
    if (!bytes) fail_message(dims_at, "shape " + format_shape(t.shape()) + " needs more than 2^63-1 bytes");
    t.size_bytes = *bytes;

    if (auto it = f_.tensor_index_.find(t.name); it != f_.tensor_index_.end())
      fail_message(at, "duplicate tensor name '" + t.name + "' (tensor infos " + std::to_string(it->second) +
                           " and " + std::to_string(i) + ")");
    f_.tensor_index_.emplace(t.name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(t));
  }

  void set_alignment() {
    item_.clear();
    const GgufValue* v = f_.find("general.alignment");
    if (v == nullptr) return;
    const auto a = v->to_uint();
    common::Where w;
    w.file = f_.path();
    w.item = "metadata key general.alignment";
    if (!a || *a == 0 || (*a & (*a - 1)) != 0 || *a > (std::uint64_t{1} << 30))
      throw common::InputError(w, "a power of two (uint32) up to 2^30", v->describe());
    f_.alignment_ = static_cast<std::uint32_t>(*a);
  }

  static std::uint64_t align_up(std::uint64_t x, std::uint64_t a) { return (x + a - 1) / a * a; }

  void place_tensor(GgufTensorInfo& t) const {
    common::Where w;
    w.file = f_.path();
    w.item = "tensor " + t.name;
    if (t.data_offset % f_.alignment_ != 0)
      throw common::InputError::message(
          w, "data offset " + std::to_string(t.data_offset) + " is not a multiple of the alignment " +
                 std::to_string(f_.alignment_));
    const std::uint64_t size = f_.map_.size();
    // Checked as differences, so that no sum can overflow.
    if (f_.data_offset_ > size || t.data_offset > size - f_.data_offset_ ||
        t.size_bytes > size - f_.data_offset_ - t.data_offset) {
      const std::uint64_t begin = f_.data_offset_ + std::min(t.data_offset, size);
      throw common::InputError::message(
          w, "data (" + plural(t.size_bytes, "byte") + " at data offset " + std::to_string(t.data_offset) +
                 ", file byte " + std::to_string(begin) + ") lies past the end of the file (" +
                 plural(size, "byte") + ")",
          "the file is truncated (an interrupted download or copy?)");
    }
    t.file_offset = f_.data_offset_ + t.data_offset;
  }

  GgufFile& f_;
  std::uint64_t pos_ = 0;
  std::uint64_t n_tensors_ = 0, n_kv_ = 0;
  std::uint64_t counts_at_ = 0;  // file offset of the tensor count
  std::string item_;
};

std::string format_shape(std::span<const std::uint64_t> shape) {
  if (shape.empty()) return "scalar";
  std::string out;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += 'x';
    out += std::to_string(shape[i]);
  }
  return out;
}

GgufFile::GgufFile(std::string path) : map_(std::move(path)) { GgufParser(*this).parse(); }

GgufTensorView GgufFile::tensor(std::size_t index) const {
  PWPI_CHECK(index < tensors_.size());
  const GgufTensorInfo& t = tensors_[index];
  GgufTensorView v;
  v.name = t.name;
  v.type = t.type;
  v.shape = t.shape();
  v.file_offset = t.file_offset;
  v.size_bytes = t.size_bytes;
  v.n_elements = t.n_elements;
  // The mapping is null for an empty file, which has no tensors; size 0 tensors get an empty span.
  if (t.size_bytes > 0) v.data = {map_.data() + t.file_offset, static_cast<std::size_t>(t.size_bytes)};
  return v;
}

std::optional<GgufTensorView> GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) return std::nullopt;
  return tensor(it->second);
}

GgufTensorView GgufFile::tensor(std::string_view name) const {
  if (auto v = find_tensor(name)) return *v;
  common::Where w;
  w.file = path();
  throw common::InputError::message(w, "no tensor named '" + std::string(name) + "'",
                                    "'powerinfer2-cli inspect " + path() + "' lists the tensors");
}

}  // namespace powerinfer2::io
