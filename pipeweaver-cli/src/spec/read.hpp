// Shared readers for the spec parsers: bounded counts and free-text notes. Internal to
// pipeweaver_core's spec/ folder.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/json_io.hpp"

namespace pipeweaver::spec::detail {

/// Sizes beyond this are typos, not models or traces (a billion tokens, layers, ...).
inline constexpr std::int64_t kMaxCount = 1'000'000'000;

/// A required member that is an integer in [1, kMaxCount].
std::int64_t positive_count(const common::JsonView& object, std::string_view key);
/// An optional member in [1, kMaxCount]; `fallback` when absent.
std::int64_t positive_count_or(const common::JsonView& object, std::string_view key, std::int64_t fallback);
/// An optional member in [0, kMaxCount]; `fallback` when absent.
std::int64_t nonnegative_count_or(const common::JsonView& object, std::string_view key,
                                  std::int64_t fallback);
/// The value itself, in [lo, kMaxCount].
std::int64_t count_value(const common::JsonView& value, std::int64_t lo);
/// A required finite number > 0 and <= hi.
double positive_number(const common::JsonView& object, std::string_view key, double hi);

/// "notes": a string or an array of strings (joined by spaces); "" when absent.
std::string notes_or_empty(const common::JsonView& root);

}  // namespace pipeweaver::spec::detail
