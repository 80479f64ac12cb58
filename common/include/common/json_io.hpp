// Reading JSON inputs with messages a person can act on: every accessor knows the file,
// the JSON Lines line and the JSON pointer it reads, and a wrong value raises
// InputError("model.json: /modules/2/layers: expected a positive integer, got -3").
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/errors.hpp"

namespace common {

using Json = nlohmann::json;

/// Reads and parses a whole JSON file. Syntax errors name file:line:column.
Json load_json_file(const std::string& path);

/// Parses JSON text; `where` (file, line) prefixes syntax errors.
Json parse_json_text(std::string_view text, const Where& where);

/// A short description of a value for "got ...": `"abc"` (string), `-4`, `an object`.
std::string describe_json(const Json& value);

/// A read-only cursor on one value of a document, carrying its location.
class JsonView {
 public:
  JsonView(const Json& value, Where where) : value_(&value), where_(std::move(where)) {}

  const Json& raw() const { return *value_; }
  const Where& where() const { return where_; }
  const std::string& pointer() const { return where_.pointer; }

  // Structure.
  bool is_object() const { return value_->is_object(); }
  bool is_array() const { return value_->is_array(); }
  bool is_null() const { return value_->is_null(); }
  bool has(std::string_view key) const;
  JsonView at(std::string_view key) const;                  // required member
  std::optional<JsonView> find(std::string_view key) const;  // optional member (null = absent)
  JsonView at(std::size_t index) const;
  std::size_t size() const;                                 // array length (requires array)
  std::vector<JsonView> items() const;                      // array elements (requires array)
  std::vector<std::string> keys() const;                    // object keys (requires object)
  /// Rejects members not in `allowed` ("unknown member 'hiden'; expected one of: ...").
  void allow_only(std::initializer_list<std::string_view> allowed) const;

  // Scalars.
  std::string as_string() const;
  bool as_bool() const;
  std::int64_t as_int() const;                 // an integral number (3.0 is accepted)
  std::int64_t as_int(std::int64_t lo, std::int64_t hi) const;
  std::int64_t as_positive_int() const;        // >= 1
  std::int64_t as_nonnegative_int() const;     // >= 0
  double as_number() const;                    // any finite number
  double as_number(double lo, double hi) const;  // finite, lo <= x <= hi
  double as_positive_number() const;           // finite, > 0
  /// One of a fixed set of strings, case-sensitive; the error lists them.
  std::string as_enum(std::initializer_list<std::string_view> choices) const;

  // Optional members with defaults.
  std::int64_t int_or(std::string_view key, std::int64_t fallback) const;
  bool bool_or(std::string_view key, bool fallback) const;
  std::string string_or(std::string_view key, std::string fallback) const;

  /// Fails with this view's location: "expected <expected>, got <description of value>".
  [[noreturn]] void fail(const std::string& expected, const std::string& hint = {}) const;
  /// Fails with a free-form message at this view's location.
  [[noreturn]] void fail_message(const std::string& text, const std::string& hint = {}) const;

 private:
  void require_object() const;
  void require_array() const;
  const Json* value_;
  Where where_;
};

/// The root of a document.
inline JsonView json_root(const Json& doc, const std::string& file, std::int64_t line = -1) {
  Where w;
  w.file = file;
  w.line = line;
  return JsonView(doc, std::move(w));
}

/// Every input format carries an integer "version"; this checks it is present and one
/// the reader supports (`format` names the format in the message, e.g. "pipeweaver model").
std::int64_t require_version(const JsonView& root, std::string_view format,
                             std::int64_t min_supported, std::int64_t max_supported);

/// Reads a JSON Lines file: one value per non-blank line, handed to `fn` with its
/// 1-based line number; a syntax error names file:line:column.
void for_each_jsonl(const std::string& path,
                    const std::function<void(const JsonView& record)>& fn);

/// Escapes a JSON pointer reference token ("a/b" -> "a~1b").
std::string json_pointer_token(std::string_view key);

}  // namespace common
