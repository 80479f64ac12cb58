// PyTorch pipelining export: the "compute_only" CSV that torch.distributed.pipelining's
// _PipelineScheduleRuntime._load_csv reads (and torchtitan's
// --parallelism.pipeline_parallel_schedule_csv): one row per pipeline rank in rank order, no
// header, comma-separated action cells "{stage}{F|B|I|W}{microbatch}" (stage = global
// virtual stage index), an empty cell meaning idle. The runtime infers the stage -> rank
// placement from the rows and inserts the sends and receives itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "schedule/schedule.hpp"

namespace pipeweaver::exporting {

/// The CSV text of a valid schedule (schedule::find_problem finds nothing): rows end with
/// "\n" (Python's csv reader, opened with newline="" as _load_csv does, reads "\n" and
/// "\r\n" alike); no empty cells. What PyTorch's runtime cannot run raises
/// common::UsageError naming the reason: a rank without any action (its lowering pass
/// asserts on an empty row, and a pipeline rank must hold a stage).
std::string to_pytorch_csv(const schedule::Schedule& schedule);

/// Checks a compute_only CSV the way PyTorch does when it loads one, plus the send/recv
/// lowering's progress check; returns "" when it would load, else the first problem on one
/// line ("row 2, cell 5: ..."). Checked: cells parse as F/B/I/W actions with a microbatch
/// (communication actions are refused, as compute_only does); every row holds at least one
/// action; each stage runs on exactly one rank; stages are 0..S-1 with S = largest + 1;
/// per stage n_microbatches distinct forwards, as many I as W, and B + (I + W) / 2 =
/// n_microbatches; per (stage, microbatch) B or I only after its F, W only after its I, no
/// pass twice (PyTorch counts sets, so a repeat would slip through there but break the run);
/// and the rows can be lowered to sends and receives without waiting forever (_add_send_recv).
/// Stricter than PyTorch on cell syntax: "1F2x" (which its regex prefix-matches) is refused.
std::string validate_pytorch_csv(std::string_view text, std::int32_t n_microbatches);

}  // namespace pipeweaver::exporting
