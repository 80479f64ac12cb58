// The batch trace: JSON Lines, one global batch per line, every line carrying
// "version": 1 so lines stay valid when a trace is cut, concatenated or shuffled.
//   {"version":1,"batch":0,"samples":[{"text_tokens":96,"images":[{"tokens":576}]},...]}
#pragma once

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "common/json_io.hpp"
#include "spec/sample.hpp"

namespace pipeweaver::spec {

inline constexpr std::int64_t kTraceVersion = 1;

/// Parses one trace record; `fallback_index` is its batch index when it has no "batch".
Batch parse_batch(const common::JsonView& record, std::int64_t fallback_index);

/// Calls `fn` on each batch in file order; errors name file:line and the JSON pointer.
void for_each_batch(const std::string& path, const std::function<void(const Batch&)>& fn);
/// Reads a whole trace; an empty trace is an error.
std::vector<Batch> load_trace(const std::string& path);

/// One trace line for `batch`, without the newline.
std::string batch_to_json_line(const Batch& batch);
/// Every batch, one line each.
void write_trace(std::ostream& out, const std::vector<Batch>& batches);

}  // namespace pipeweaver::spec
