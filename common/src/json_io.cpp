#include "common/json_io.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "common/file_io.hpp"

namespace common {

namespace {

// Translates a byte offset of `text` to a 1-based line and column.
void locate(std::string_view text, std::size_t offset, std::int64_t& line, std::int64_t& column) {
  offset = std::min(offset, text.size());
  line = 1;
  std::size_t line_start = 0;
  for (std::size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  column = static_cast<std::int64_t>(offset - line_start) + 1;
}

// nlohmann's parse_error text is "[json.exception.parse_error.101] parse error at line 1,
// column 5: syntax error while parsing value - invalid literal; last read: 'tru}'".
// Keep the part after the location, which says what went wrong.
std::string parse_error_reason(const std::string& what) {
  auto pos = what.find(": ", what.find("parse error"));
  std::string reason = pos == std::string::npos ? what : what.substr(pos + 2);
  return reason;
}

std::string join(std::initializer_list<std::string_view> items) {
  std::string out;
  for (auto s : items) {
    if (!out.empty()) out += ", ";
    out += s;
  }
  return out;
}

}  // namespace

Json parse_json_text(std::string_view text, const Where& where) {
  try {
    return Json::parse(text.begin(), text.end());
  } catch (const Json::parse_error& e) {
    Where w = where;
    // e.byte is 1-based and points one past the offending character.
    std::size_t offset = e.byte > 0 ? e.byte - 1 : 0;
    std::int64_t line = 0, column = 0;
    locate(text, offset, line, column);
    // A JSON Lines record is one line of its file: keep that line number.
    w.line = where.line >= 0 ? where.line : line;
    w.column = column;
    throw InputError::message(w, "invalid JSON: " + parse_error_reason(e.what()));
  }
}

Json load_json_file(const std::string& path) {
  std::string text = read_file(path);
  Where w;
  w.file = path;
  return parse_json_text(text, w);
}

std::string describe_json(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::object: return "an object";
    case Json::value_t::array: return "an array of " + std::to_string(value.size());
    case Json::value_t::string: {
      std::string s = value.dump();
      if (s.size() > 42) s = s.substr(0, 38) + "...\"";
      return "the string " + s;
    }
    default: {
      std::string s = value.dump();
      if (s.size() > 40) s = s.substr(0, 37) + "...";
      return s;
    }
  }
}

std::string json_pointer_token(std::string_view key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

void JsonView::fail(const std::string& expected, const std::string& hint) const {
  throw InputError(where_, expected, describe_json(*value_), hint);
}

void JsonView::fail_message(const std::string& text, const std::string& hint) const {
  throw InputError::message(where_, text, hint);
}

void JsonView::require_object() const {
  if (!value_->is_object()) fail("an object");
}

void JsonView::require_array() const {
  if (!value_->is_array()) fail("an array");
}

bool JsonView::has(std::string_view key) const {
  return value_->is_object() && value_->contains(key) && !(*value_)[std::string(key)].is_null();
}

std::optional<JsonView> JsonView::find(std::string_view key) const {
  require_object();
  auto it = value_->find(key);
  if (it == value_->end() || it->is_null()) return std::nullopt;
  return JsonView(*it, where_.with_pointer(where_.pointer + "/" + json_pointer_token(key)));
}

JsonView JsonView::at(std::string_view key) const {
  require_object();
  auto found = find(key);
  if (!found) {
    Where w = where_.with_pointer(where_.pointer + "/" + json_pointer_token(key));
    throw InputError::message(w, "missing required member");
  }
  return *found;
}

JsonView JsonView::at(std::size_t index) const {
  require_array();
  if (index >= value_->size()) {
    throw InputError(where_, "an array with at least " + std::to_string(index + 1) + " elements",
                     "an array of " + std::to_string(value_->size()));
  }
  return JsonView((*value_)[index], where_.with_pointer(where_.pointer + "/" + std::to_string(index)));
}

std::size_t JsonView::size() const {
  require_array();
  return value_->size();
}

std::vector<JsonView> JsonView::items() const {
  require_array();
  std::vector<JsonView> out;
  out.reserve(value_->size());
  for (std::size_t i = 0; i < value_->size(); ++i) out.push_back(at(i));
  return out;
}

std::vector<std::string> JsonView::keys() const {
  require_object();
  std::vector<std::string> out;
  for (auto it = value_->begin(); it != value_->end(); ++it) out.push_back(it.key());
  return out;
}

void JsonView::allow_only(std::initializer_list<std::string_view> allowed) const {
  require_object();
  for (auto it = value_->begin(); it != value_->end(); ++it) {
    bool ok = false;
    for (auto a : allowed) ok = ok || a == it.key();
    if (!ok) {
      Where w = where_.with_pointer(where_.pointer + "/" + json_pointer_token(it.key()));
      throw InputError::message(w, "unknown member; expected one of: " + join(allowed));
    }
  }
}

std::string JsonView::as_string() const {
  if (!value_->is_string()) fail("a string");
  return value_->get<std::string>();
}

bool JsonView::as_bool() const {
  if (!value_->is_boolean()) fail("true or false");
  return value_->get<bool>();
}

std::int64_t JsonView::as_int() const {
  if (value_->is_number_integer()) {
    if (value_->is_number_unsigned() &&
        value_->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail("an integer that fits in 64 bits");
    return value_->get<std::int64_t>();
  }
  if (value_->is_number_float()) {
    double d = value_->get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
      return static_cast<std::int64_t>(d);
  }
  fail("an integer");
}

std::int64_t JsonView::as_int(std::int64_t lo, std::int64_t hi) const {
  std::int64_t v = as_int();
  if (v < lo || v > hi)
    fail("an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

std::int64_t JsonView::as_positive_int() const {
  std::int64_t v = value_->is_number() ? as_int() : 0;
  if (!value_->is_number() || v < 1) fail("a positive integer");
  return v;
}

std::int64_t JsonView::as_nonnegative_int() const {
  std::int64_t v = value_->is_number() ? as_int() : 0;
  if (!value_->is_number() || v < 0) fail("a non-negative integer");
  return v;
}

double JsonView::as_number() const {
  if (!value_->is_number()) fail("a number");
  return value_->get<double>();
}

static std::string fmt_num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

double JsonView::as_number(double lo, double hi) const {
  if (!value_->is_number()) fail("a number in [" + fmt_num(lo) + ", " + fmt_num(hi) + "]");
  double v = value_->get<double>();
  if (!(v >= lo && v <= hi)) fail("a number in [" + fmt_num(lo) + ", " + fmt_num(hi) + "]");
  return v;
}

double JsonView::as_positive_number() const {
  if (!value_->is_number() || !(value_->get<double>() > 0.0)) fail("a positive number");
  return value_->get<double>();
}

std::string JsonView::as_enum(std::initializer_list<std::string_view> choices) const {
  std::string expected = "one of " + join(choices);
  if (!value_->is_string()) fail(expected);
  std::string s = value_->get<std::string>();
  for (auto c : choices)
    if (c == s) return s;
  fail(expected);
}

std::int64_t JsonView::int_or(std::string_view key, std::int64_t fallback) const {
  auto v = find(key);
  return v ? v->as_int() : fallback;
}

bool JsonView::bool_or(std::string_view key, bool fallback) const {
  auto v = find(key);
  return v ? v->as_bool() : fallback;
}

std::string JsonView::string_or(std::string_view key, std::string fallback) const {
  auto v = find(key);
  return v ? v->as_string() : fallback;
}

std::int64_t require_version(const JsonView& root, std::string_view format,
                             std::int64_t min_supported, std::int64_t max_supported) {
  if (!root.is_object()) root.fail("a JSON object (" + std::string(format) + ")");
  std::string supported = min_supported == max_supported
                              ? std::to_string(min_supported)
                              : std::to_string(min_supported) + ".." + std::to_string(max_supported);
  auto v = root.find("version");
  if (!v) {
    Where w = root.where().with_pointer(root.pointer() + "/version");
    throw InputError::message(w, "missing required member (every " + std::string(format) +
                                     " file declares its format version; this build reads version " +
                                     supported + ")");
  }
  if (!v->raw().is_number_integer()) v->fail("an integer format version");
  std::int64_t version = v->as_int();
  if (version < min_supported || version > max_supported)
    v->fail("a supported " + std::string(format) + " version (" + supported + ")");
  return version;
}

void for_each_jsonl(const std::string& path, const std::function<void(const JsonView& record)>& fn) {
  std::string text = read_file(path);
  std::size_t pos = 0;
  std::int64_t line_no = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    ++line_no;
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    Where w;
    w.file = path;
    w.line = line_no;
    Json record = parse_json_text(line, w);
    fn(JsonView(record, w));
  }
}

}  // namespace common
