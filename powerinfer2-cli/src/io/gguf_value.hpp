// A GGUF metadata value: one of the 12 scalar/string types or an array of them (arrays of
// arrays included). Shared by the reader (what a file holds) and the writer (what to write).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "io/gguf_types.hpp"

namespace powerinfer2::io {

/// An array value. All elements share one type; the variant's alternative index is that
/// type's GgufValueType id, so `items.index()` is the element type.
struct GgufArray {
  using Items = std::variant<std::vector<std::uint8_t>, std::vector<std::int8_t>,
                             std::vector<std::uint16_t>, std::vector<std::int16_t>,
                             std::vector<std::uint32_t>, std::vector<std::int32_t>,
                             std::vector<float>, std::vector<bool>, std::vector<std::string>,
                             std::vector<GgufArray>, std::vector<std::uint64_t>,
                             std::vector<std::int64_t>, std::vector<double>>;
  Items items;

  GgufValueType element_type() const { return static_cast<GgufValueType>(items.index()); }
  std::size_t size() const;
  bool operator==(const GgufArray&) const = default;

  /// The elements when they are exactly of type T, else nullptr.
  template <class T>
  const std::vector<T>* get_if() const { return std::get_if<std::vector<T>>(&items); }

  /// Element i of an integer array as int64 / uint64; nullopt when the array is not of an
  /// integer type or the value does not fit.
  std::optional<std::int64_t> int_at(std::size_t i) const;
  std::optional<std::uint64_t> uint_at(std::size_t i) const;
  /// Element i of a float32/float64 array.
  std::optional<double> float_at(std::size_t i) const;
};

/// The C++ types that are GGUF scalar values, with their type tags.
template <class T>
inline constexpr bool kIsGgufScalar =
    std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int8_t> ||
    std::is_same_v<T, std::uint16_t> || std::is_same_v<T, std::int16_t> ||
    std::is_same_v<T, std::uint32_t> || std::is_same_v<T, std::int32_t> ||
    std::is_same_v<T, float> || std::is_same_v<T, bool> || std::is_same_v<T, std::uint64_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, double>;

/// One metadata value. Construct from a value of the exact C++ type of the GGUF type
/// wanted (`std::uint32_t{5}` is uint32, `5` is int32), a string, or an array.
class GgufValue {
 public:
  /// Alternative index == GgufValueType id.
  using Storage = std::variant<std::uint8_t, std::int8_t, std::uint16_t, std::int16_t,
                               std::uint32_t, std::int32_t, float, bool, std::string, GgufArray,
                               std::uint64_t, std::int64_t, double>;

  template <class T>
    requires kIsGgufScalar<T>
  GgufValue(T v) : v_(v) {}  // NOLINT: implicit on purpose, values read as literals
  GgufValue(std::string s) : v_(std::move(s)) {}
  GgufValue(std::string_view s) : v_(std::string(s)) {}
  GgufValue(const char* s) : v_(std::string(s)) {}
  GgufValue(GgufArray a) : v_(std::move(a)) {}

  /// An array from a vector of any element type (std::string and GgufArray included).
  template <class T>
  static GgufValue array(std::vector<T> items) {
    return GgufValue(GgufArray{GgufArray::Items(std::move(items))});
  }

  GgufValueType type() const { return static_cast<GgufValueType>(v_.index()); }
  bool is_array() const { return type() == GgufValueType::ARRAY; }
  const Storage& storage() const { return v_; }

  /// The value when it is exactly of type T (a scalar type, std::string or GgufArray).
  template <class T>
  const T* get_if() const { return std::get_if<T>(&v_); }

  /// An integer value converted when it fits: any integer type is accepted, so a count
  /// stored as uint16 or int32 reads as uint64 alike.
  std::optional<std::int64_t> to_int() const;
  std::optional<std::uint64_t> to_uint() const;
  /// float32 or float64.
  std::optional<double> to_float() const;

  /// A short description for error messages: `uint32 5`, `string "llama"`,
  /// `float32[32000] array`.
  std::string describe() const;

  bool operator==(const GgufValue&) const = default;

 private:
  Storage v_;
};

/// The type of a value with its length when an array: "uint32", "string[32000]",
/// "array[2]" for an array of 2 arrays.
std::string gguf_type_label(const GgufValue& value);

/// A string for messages and tables: in double quotes, `"` and `\` escaped, control bytes
/// as \n, \t or \xNN, cut after `max_chars` bytes with "..." after the closing quote.
std::string quote_string(std::string_view s, std::size_t max_chars);

/// One key/value pair as stored, in file order.
struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

}  // namespace powerinfer2::io
