#include "spec/read.hpp"

#include <sstream>

namespace pipeweaver::spec::detail {

std::int64_t count_value(const common::JsonView& value, std::int64_t lo) {
  std::int64_t v = lo >= 1 ? value.as_positive_int() : value.as_nonnegative_int();
  if (v < lo) value.fail("an integer >= " + std::to_string(lo));
  if (v > kMaxCount)
    value.fail("an integer no larger than " + std::to_string(kMaxCount),
               "that size is absurd; check for a typo");
  return v;
}

std::int64_t positive_count(const common::JsonView& object, std::string_view key) {
  return count_value(object.at(key), 1);
}

std::int64_t positive_count_or(const common::JsonView& object, std::string_view key, std::int64_t fallback) {
  auto v = object.find(key);
  return v ? count_value(*v, 1) : fallback;
}

std::int64_t nonnegative_count_or(const common::JsonView& object, std::string_view key,
                                  std::int64_t fallback) {
  auto v = object.find(key);
  return v ? count_value(*v, 0) : fallback;
}

double positive_number(const common::JsonView& object, std::string_view key, double hi) {
  common::JsonView v = object.at(key);
  double x = v.as_positive_number();
  if (x > hi) {
    std::ostringstream s;
    s << "a positive number no larger than " << hi;
    v.fail(s.str());
  }
  return x;
}

std::string notes_or_empty(const common::JsonView& root) {
  auto notes = root.find("notes");
  if (!notes) return {};
  if (notes->raw().is_string()) return notes->as_string();
  if (!notes->is_array()) notes->fail("a string or an array of strings");
  std::string out;
  for (const auto& line : notes->items()) {
    if (!out.empty()) out += ' ';
    out += line.as_string();
  }
  return out;
}

}  // namespace pipeweaver::spec::detail
