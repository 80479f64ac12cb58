// Baseline schedule generators: pure functions from (ranks, chunks per rank, microbatches)
// to per-rank action tables. Virtual stage s runs on rank s mod p; with one chunk per rank
// that is rank s. Chunk contents (which layers) are the caller's: `chunks` lists them in
// pipeline order and their `rank` is overwritten with the placement. gpipe, 1f1b and zb-h1
// take exactly one chunk per rank (common::UsageError otherwise).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "schedule/schedule.hpp"

namespace pipeweaver::schedule {

/// GPipe: every forward, then every backward (in reverse microbatch order, as GPipe's
/// autograd runs them).
Schedule gpipe(std::int32_t n_ranks, std::int32_t n_microbatches, std::vector<Chunk> chunks);

/// 1F1B (PipeDream-Flush): rank r warms up with min(p - r - 1, m) forwards, then alternates
/// one forward and one backward, then drains the remaining backwards.
Schedule one_f_one_b(std::int32_t n_ranks, std::int32_t n_microbatches, std::vector<Chunk> chunks);

/// ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024): 1F1B's warm-up
/// (min(p - r - 1, m) forwards on rank r) with every backward split into I (input gradient,
/// on the critical path) and W (weight gradient); rank r defers its W passes by r, so they
/// fill the cool-down bubbles. In flight on every rank: min(m, p) microbatches, of which up
/// to r hold only their W activations (act_w_bytes). With zero communication and uniform
/// per-stage costs where T_W <= T_F, the step takes
///   m (T_F + T_I + T_W) + (p - 1)(T_F + T_I) - (min(m, p) - 1) min(T_W, T_I),
/// i.e. a bubble of (p - 1)(T_F + T_I - T_W) for m >= p and T_W <= T_I (1F1B: (p - 1)(T_F + T_I + T_W)).
Schedule zb_h1(std::int32_t n_ranks, std::int32_t n_microbatches, std::vector<Chunk> chunks);

/// Interleaved 1F1B in Megatron-LM's order: v = chunks / ranks virtual stages per rank,
/// microbatches in groups of p, rank r warms up with 2(p - r - 1) + (v - 1)p forwards.
/// Requires m to be a multiple of p (as Megatron-LM does).
Schedule interleaved_1f1b(std::int32_t n_ranks, std::int32_t n_microbatches, std::vector<Chunk> chunks);

/// A generator by name, for the command line. Names are matched case-insensitively.
struct GeneratorInfo {
  const char* name;         // "gpipe", "1f1b", "interleaved-1f1b", "zb-h1"
  const char* description;
  bool interleaved;         // takes several chunks per rank (needs m a multiple of p)
  Schedule (*make)(std::int32_t n_ranks, std::int32_t n_microbatches, std::vector<Chunk> chunks);
};
std::span<const GeneratorInfo> generator_registry();
/// The generator named `name` (any case), or nullptr.
const GeneratorInfo* find_generator(std::string_view name);
/// "gpipe, 1f1b, interleaved-1f1b, zb-h1": for error messages.
std::string generator_names();

/// `n` chunks of one module, `layers_per_chunk` layers each, for tests and examples.
std::vector<Chunk> uniform_chunks(const std::string& module, std::int32_t n, std::int32_t layers_per_chunk);

}  // namespace pipeweaver::schedule
