#include "schedule/generators.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "common/errors.hpp"

namespace pipeweaver::schedule {

namespace {

Schedule skeleton(std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  PWPI_CHECK_MSG(p >= 1 && m >= 1, "a schedule needs ranks and microbatches");
  PWPI_CHECK_MSG(!chunks.empty() && chunks.size() % static_cast<std::size_t>(p) == 0,
                 "the number of chunks must be a multiple of the number of ranks");
  Schedule s;
  s.n_ranks = p;
  s.n_microbatches = m;
  for (std::size_t c = 0; c < chunks.size(); ++c) chunks[c].rank = static_cast<std::int32_t>(c % static_cast<std::size_t>(p));
  s.chunks = std::move(chunks);
  s.rank_actions.resize(static_cast<std::size_t>(p));
  return s;
}

// The skeleton of a schedule with exactly one chunk per rank (stage r on rank r).
Schedule one_chunk_per_rank(const char* name, std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  if (static_cast<std::int32_t>(chunks.size()) != p)
    throw common::UsageError(std::string(name) + " runs one chunk per rank, got " + std::to_string(chunks.size()) +
                                 " chunks for " + std::to_string(p) + " ranks",
                             "use interleaved-1f1b for several chunks per rank");
  return skeleton(p, m, std::move(chunks));
}

}  // namespace

std::vector<Chunk> uniform_chunks(const std::string& module, std::int32_t n, std::int32_t layers_per_chunk) {
  std::vector<Chunk> out;
  for (std::int32_t c = 0; c < n; ++c) out.push_back({module, c * layers_per_chunk, (c + 1) * layers_per_chunk, 0});
  return out;
}

Schedule gpipe(std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  Schedule s = one_chunk_per_rank("gpipe", p, m, std::move(chunks));
  for (std::int32_t r = 0; r < p; ++r) {
    auto& list = s.rank_actions[static_cast<std::size_t>(r)];
    for (std::int32_t i = 0; i < m; ++i) list.push_back({r, Op::F, i});
    for (std::int32_t i = m - 1; i >= 0; --i) list.push_back({r, Op::B, i});
  }
  return s;
}

Schedule one_f_one_b(std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  Schedule s = one_chunk_per_rank("1f1b", p, m, std::move(chunks));
  for (std::int32_t r = 0; r < p; ++r) {
    auto& list = s.rank_actions[static_cast<std::size_t>(r)];
    const std::int32_t warmup = std::min(p - r - 1, m);
    std::int32_t f = 0, b = 0;
    for (; f < warmup; ++f) list.push_back({r, Op::F, f});
    while (f < m) {
      list.push_back({r, Op::F, f++});
      list.push_back({r, Op::B, b++});
    }
    while (b < m) list.push_back({r, Op::B, b++});
  }
  return s;
}

Schedule zb_h1(std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  Schedule s = one_chunk_per_rank("zb-h1", p, m, std::move(chunks));
  for (std::int32_t r = 0; r < p; ++r) {
    auto& list = s.rank_actions[static_cast<std::size_t>(r)];
    // Rank r keeps up to r weight-gradient passes pending: with its p - r - 1 warm-up
    // forwards that makes min(m, p) microbatches in flight on every rank.
    const std::int32_t warmup = std::min(p - r - 1, m);
    std::int32_t f = 0, i = 0, w = 0;
    auto input_grad = [&] {
      list.push_back({r, Op::I, i++});
      if (i - w > r) list.push_back({r, Op::W, w++});
    };
    for (; f < warmup; ++f) list.push_back({r, Op::F, f});
    while (f < m) {
      list.push_back({r, Op::F, f++});
      input_grad();
    }
    while (i < m) input_grad();
    while (w < m) list.push_back({r, Op::W, w++});
  }
  return s;
}

Schedule interleaved_1f1b(std::int32_t p, std::int32_t m, std::vector<Chunk> chunks) {
  const std::int32_t v = static_cast<std::int32_t>(chunks.size()) / p;
  PWPI_CHECK_MSG(m % p == 0, "interleaved 1F1B needs the microbatch count to be a multiple of the rank count");
  Schedule s = skeleton(p, m, std::move(chunks));
  const std::int32_t total = m * v;  // passes of each kind per rank
  // The k-th forward (backward) pass on a rank: microbatch groups of p, chunks cycling
  // inside a group; backwards visit the chunks in reverse.
  auto chunk_of = [&](std::int32_t k, bool forward) {
    const std::int32_t c = (k % (p * v)) / p;
    return forward ? c : v - 1 - c;
  };
  auto microbatch_of = [&](std::int32_t k) { return (k / (p * v)) * p + k % p; };
  for (std::int32_t r = 0; r < p; ++r) {
    auto& list = s.rank_actions[static_cast<std::size_t>(r)];
    auto fwd = [&](std::int32_t k) { list.push_back({chunk_of(k, true) * p + r, Op::F, microbatch_of(k)}); };
    auto bwd = [&](std::int32_t k) { list.push_back({chunk_of(k, false) * p + r, Op::B, microbatch_of(k)}); };
    const std::int32_t warmup = std::min(2 * (p - r - 1) + (v - 1) * p, total);
    std::int32_t f = 0, b = 0;
    for (; f < warmup; ++f) fwd(f);
    while (f < total) {
      fwd(f++);
      bwd(b++);
    }
    while (b < total) bwd(b++);
  }
  return s;
}

namespace {

constexpr std::array<GeneratorInfo, 4> kGenerators{{
    {"gpipe", "all forwards, then all backwards (one chunk per rank)", false, &gpipe},
    {"1f1b", "PipeDream-Flush one-forward-one-backward (one chunk per rank)", false, &one_f_one_b},
    {"interleaved-1f1b", "Megatron-LM interleaved 1F1B (several chunks per rank)", true, &interleaved_1f1b},
    {"zb-h1", "zero-bubble ZB-H1: 1F1B with split backward, weight gradients deferred into bubbles (one chunk per rank)",
     false, &zb_h1},
}};

}  // namespace

std::span<const GeneratorInfo> generator_registry() {
  return kGenerators;
}

const GeneratorInfo* find_generator(std::string_view name) {
  for (const GeneratorInfo& g : kGenerators) {
    const std::string_view n = g.name;
    if (n.size() == name.size() &&
        std::equal(n.begin(), n.end(), name.begin(), [](char a, char b) {
          return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
        }))
      return &g;
  }
  return nullptr;
}

std::string generator_names() {
  std::string out;
  for (const GeneratorInfo& g : kGenerators) out += (out.empty() ? "" : ", ") + std::string(g.name);
  return out;
}

}  // namespace pipeweaver::schedule
