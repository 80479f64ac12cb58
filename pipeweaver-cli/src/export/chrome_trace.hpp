// Chrome Trace Event Format export of one emulated step, for chrome://tracing and Perfetto:
// {"traceEvents": [...], "displayTimeUnit": "ms", "otherData": {...}}.
// - one process per rank (pid = rank, named "rank r" by "M" metadata), thread 0 "compute"
//   and thread 1 "send";
// - "X" complete events for passes, named like "F mb3 c1" (c = global virtual stage), with
//   args {action, stage, module, layers, microbatch, dur_ns}, and for transfers on the
//   sender's send thread;
// - "C" counter events "memory" per rank (bytes: static + activations), from time 0;
// - flow events "s" (in the transfer slice) -> "f" with "bp": "e" (in the consuming pass)
//   for every send between ranks, paired by id.
// Timestamps and durations are microseconds (floating point) from the step's start.
#pragma once

#include <string>
#include <vector>

#include "common/json_io.hpp"
#include "schedule/schedule.hpp"
#include "semu/semu.hpp"

namespace pipeweaver::exporting {

struct ChromeTraceInfo {
  std::string title;                    // e.g. "llava-1.5-7b, 1f1b, batch 3"
  common::Json other = common::Json::object();  // extra "otherData" members
};

/// `result` must come from simulate(..., {.record_timeline = true}) with `costs`.
common::Json chrome_trace(const schedule::Schedule& schedule, const cost::StepCosts& costs,
                          const semu::Result& result, const ChromeTraceInfo& info);

/// Writes the trace atomically (a temporary renamed into place).
void write_chrome_trace(const std::string& path, const common::Json& trace);

}  // namespace pipeweaver::exporting
