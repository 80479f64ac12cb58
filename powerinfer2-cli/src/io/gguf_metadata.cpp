// GgufFile's typed metadata getters.
#include <limits>

#include "common/errors.hpp"
#include "io/gguf_reader.hpp"

namespace powerinfer2::io {

namespace {

common::Where key_where(const std::string& file, std::string_view key) {
  common::Where w;
  w.file = file;
  w.item = "metadata key " + std::string(key);
  return w;
}

template <class T>
constexpr std::string_view type_name_of() {
  if constexpr (std::is_same_v<T, std::uint32_t>) return "uint32";
  if constexpr (std::is_same_v<T, std::uint64_t>) return "uint64";
  if constexpr (std::is_same_v<T, std::int32_t>) return "int32";
  if constexpr (std::is_same_v<T, std::int64_t>) return "int64";
  if constexpr (std::is_same_v<T, float>) return "float32";
  if constexpr (std::is_same_v<T, double>) return "float64";
}

// An integer of type T from a value of any integer type, when it fits.
template <class T>
std::optional<T> narrow_int(std::optional<std::int64_t> as_signed, std::optional<std::uint64_t> as_unsigned) {
  if constexpr (std::is_signed_v<T>) {
    if (as_signed && *as_signed >= std::numeric_limits<T>::min() && *as_signed <= std::numeric_limits<T>::max())
      return static_cast<T>(*as_signed);
  } else {
    if (as_unsigned && *as_unsigned <= std::numeric_limits<T>::max()) return static_cast<T>(*as_unsigned);
  }
  return std::nullopt;
}

template <class T>
std::optional<T> convert(const GgufValue& v) {
  if constexpr (std::is_floating_point_v<T>) {
    if (auto f = v.to_float()) return static_cast<T>(*f);
    return std::nullopt;
  } else {
    return narrow_int<T>(v.to_int(), v.to_uint());
  }
}

template <class T>
std::optional<T> convert_element(const GgufArray& a, std::size_t i) {
  if constexpr (std::is_floating_point_v<T>) {
    if (auto f = a.float_at(i)) return static_cast<T>(*f);
    return std::nullopt;
  } else {
    return narrow_int<T>(a.int_at(i), a.uint_at(i));
  }
}

// Describes element i of an array for "got ...".
std::string describe_element(const GgufArray& a, std::size_t i) {
  return std::visit(
      [i](const auto& v) -> std::string {
        using E = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<E, GgufArray>) {
          return "an array";
        } else {
          return GgufValue(static_cast<E>(v[i])).describe();
        }
      },
      a.items);
}

}  // namespace

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].value;
}

const GgufValue& GgufFile::get(std::string_view key) const {
  if (const GgufValue* v = find(key)) return *v;
  throw common::InputError::message(key_where(path(), key), "missing (the file has no such key)");
}

void GgufFile::fail_type(std::string_view key, std::string_view expected, const GgufValue& got) const {
  throw common::InputError(key_where(path(), key), std::string(expected), got.describe());
}

namespace {

template <class T>
T get_number(const GgufFile& f, std::string_view key, const GgufValue* v) {
  if (v == nullptr)
    throw common::InputError(key_where(f.path(), key), std::string(type_name_of<T>()),
                             "nothing (the file has no such key)");
  if (auto x = convert<T>(*v)) return *x;
  throw common::InputError(key_where(f.path(), key), std::string(type_name_of<T>()), v->describe());
}

template <class T>
std::vector<T> get_numbers(const GgufFile& f, std::string_view key) {
  const GgufArray& a = f.get_array(key);
  std::vector<T> out(a.size());
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto x = convert_element<T>(a, i);
    if (!x) {
      const std::string expected = "an array of " + std::string(type_name_of<T>());
      const std::string got = a.element_type() == GgufValueType::ARRAY || a.element_type() == GgufValueType::STRING ||
                                      a.element_type() == GgufValueType::BOOL
                                  ? "an array of " + std::string(gguf_value_type_name(a.element_type()))
                                  : describe_element(a, i) + " at index " + std::to_string(i);
      throw common::InputError(key_where(f.path(), key), expected, got);
    }
    out[i] = *x;
  }
  return out;
}

}  // namespace

std::uint32_t GgufFile::get_u32(std::string_view key) const { return get_number<std::uint32_t>(*this, key, find(key)); }
std::uint64_t GgufFile::get_u64(std::string_view key) const { return get_number<std::uint64_t>(*this, key, find(key)); }
std::int64_t GgufFile::get_i64(std::string_view key) const { return get_number<std::int64_t>(*this, key, find(key)); }
float GgufFile::get_f32(std::string_view key) const { return get_number<float>(*this, key, find(key)); }

bool GgufFile::get_bool(std::string_view key) const {
  const GgufValue& v = get(key);
  if (const bool* b = v.get_if<bool>()) return *b;
  fail_type(key, "bool", v);
}

const std::string& GgufFile::get_string(std::string_view key) const {
  const GgufValue& v = get(key);
  if (const std::string* s = v.get_if<std::string>()) return *s;
  fail_type(key, "string", v);
}

std::uint32_t GgufFile::get_u32_or(std::string_view key, std::uint32_t fallback) const {
  return has(key) ? get_u32(key) : fallback;
}
std::uint64_t GgufFile::get_u64_or(std::string_view key, std::uint64_t fallback) const {
  return has(key) ? get_u64(key) : fallback;
}
float GgufFile::get_f32_or(std::string_view key, float fallback) const {
  return has(key) ? get_f32(key) : fallback;
}
bool GgufFile::get_bool_or(std::string_view key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}
std::string GgufFile::get_string_or(std::string_view key, std::string fallback) const {
  return has(key) ? get_string(key) : fallback;
}

const GgufArray& GgufFile::get_array(std::string_view key) const {
  const GgufValue& v = get(key);
  if (const GgufArray* a = v.get_if<GgufArray>()) return *a;
  fail_type(key, "an array", v);
}

const std::vector<std::string>& GgufFile::get_string_array(std::string_view key) const {
  const GgufArray& a = get_array(key);
  if (const auto* s = a.get_if<std::string>()) return *s;
  throw common::InputError(key_where(path(), key), "an array of string",
                           "an array of " + std::string(gguf_value_type_name(a.element_type())));
}

std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  if (const auto* f = get_array(key).get_if<float>()) return *f;
  return get_numbers<float>(*this, key);
}
std::vector<std::int32_t> GgufFile::get_i32_array(std::string_view key) const {
  return get_numbers<std::int32_t>(*this, key);
}

}  // namespace powerinfer2::io
