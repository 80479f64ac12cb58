#include "io/gguf_value.hpp"

#include <limits>
#include <sstream>

namespace powerinfer2::io {

namespace {

template <class T>
std::optional<std::int64_t> int_of(T v) {
  if constexpr (std::is_same_v<T, bool> || std::is_floating_point_v<T>) {
    return std::nullopt;
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(v);
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<std::int64_t>(v);
  } else {
    return std::nullopt;
  }
}

template <class T>
std::optional<std::uint64_t> uint_of(T v) {
  if constexpr (std::is_same_v<T, bool> || std::is_floating_point_v<T>) {
    return std::nullopt;
  } else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    if (v < 0) return std::nullopt;
    return static_cast<std::uint64_t>(v);
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<std::uint64_t>(v);
  } else {
    return std::nullopt;
  }
}

template <class T>
std::optional<double> float_of(T v) {
  if constexpr (std::is_floating_point_v<T>) return static_cast<double>(v);
  return std::nullopt;
}

}  // namespace

std::size_t GgufArray::size() const {
  return std::visit([](const auto& v) { return v.size(); }, items);
}

std::optional<std::int64_t> GgufArray::int_at(std::size_t i) const {
  return std::visit(
      [i](const auto& v) -> std::optional<std::int64_t> {
        using T = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, GgufArray>) {
          return std::nullopt;
        } else {
          if (i >= v.size()) return std::nullopt;
          return int_of(static_cast<T>(v[i]));
        }
      },
      items);
}

std::optional<std::uint64_t> GgufArray::uint_at(std::size_t i) const {
  return std::visit(
      [i](const auto& v) -> std::optional<std::uint64_t> {
        using T = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, GgufArray>) {
          return std::nullopt;
        } else {
          if (i >= v.size()) return std::nullopt;
          return uint_of(static_cast<T>(v[i]));
        }
      },
      items);
}

std::optional<double> GgufArray::float_at(std::size_t i) const {
  return std::visit(
      [i](const auto& v) -> std::optional<double> {
        using T = typename std::decay_t<decltype(v)>::value_type;
        if constexpr (std::is_same_v<T, std::string> || std::is_same_v<T, GgufArray>) {
          return std::nullopt;
        } else {
          if (i >= v.size()) return std::nullopt;
          return float_of(static_cast<T>(v[i]));
        }
      },
      items);
}

std::optional<std::int64_t> GgufValue::to_int() const {
  return std::visit([](const auto& v) -> std::optional<std::int64_t> { return int_of(v); }, v_);
}

std::optional<std::uint64_t> GgufValue::to_uint() const {
  return std::visit([](const auto& v) -> std::optional<std::uint64_t> { return uint_of(v); }, v_);
}

std::optional<double> GgufValue::to_float() const {
  return std::visit([](const auto& v) -> std::optional<double> { return float_of(v); }, v_);
}

std::string GgufValue::describe() const {
  std::ostringstream s;
  s << gguf_type_label(*this);
  std::visit(
      [&s](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, GgufArray>) {
          s << " array";
        } else if constexpr (std::is_same_v<T, std::string>) {
          s << ' ' << quote_string(v, 40);
        } else if constexpr (std::is_same_v<T, bool>) {
          s << (v ? " true" : " false");
        } else if constexpr (std::is_same_v<T, std::int8_t> || std::is_same_v<T, std::uint8_t>) {
          s << ' ' << static_cast<int>(v);
        } else {
          s << ' ' << v;
        }
      },
      v_);
  return s.str();
}

std::string quote_string(std::string_view s, std::size_t max_chars) {
  static const char* hex = "0123456789abcdef";
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < max_chars; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  out += '"';
  if (s.size() > max_chars) out += "...";
  return out;
}

std::string gguf_type_label(const GgufValue& value) {
  if (const GgufArray* a = value.get_if<GgufArray>())
    return std::string(gguf_value_type_name(a->element_type())) + "[" + std::to_string(a->size()) + "]";
  return std::string(gguf_value_type_name(value.type()));
}

}  // namespace powerinfer2::io
