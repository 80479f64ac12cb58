// Temporal reuse of whole emulations: a batch whose schedule and costs repeat exactly is
// not played again. Keys are everything simulate() reads (ranks, microbatches, each stage's
// rank, each rank's actions, every cost) and are compared in full (a hash only picks the
// bucket), so a hit returns exactly what simulate() would. A miss costs a hash and a copy
// of the key, a few percent of an emulation.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "semu/semu.hpp"

namespace pipeweaver::semu {

class ResultCache {
 public:
  /// At most `max_entries` steps and `max_key_bytes` of stored keys (then it starts over).
  explicit ResultCache(std::size_t max_entries = 256, std::size_t max_key_bytes = std::size_t{64} << 20)
      : max_entries_(max_entries), max_key_bytes_(max_key_bytes) {}
  ResultCache(const ResultCache&) = delete;
  ResultCache& operator=(const ResultCache&) = delete;

  /// simulate(schedule, costs, options), or the stored result of an identical call. The
  /// reference is valid until the cache starts over (max_entries later at the soonest).
  const Result& simulate(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options = {});

  std::int64_t lookups() const { return lookups_; }
  std::int64_t hits() const { return hits_; }
  double hit_rate() const { return lookups_ ? static_cast<double>(hits_) / static_cast<double>(lookups_) : 0.0; }

 private:
  struct Entry {
    std::unique_ptr<std::int64_t[]> key;  // what simulate() reads of the schedule and costs, flattened
    std::size_t key_size = 0, key_capacity = 0;
    bool timeline = false;
    Result result;
  };
  std::size_t max_entries_, max_key_bytes_;
  std::size_t key_bytes_ = 0;  // of the entries held
  std::unordered_multimap<std::uint64_t, std::unique_ptr<Entry>> entries_;
  std::vector<std::unique_ptr<Entry>> spare_;  // evicted entries, their key storage reused
  std::int64_t lookups_ = 0, hits_ = 0;
  std::vector<std::int64_t> packed_;  // scratch: one rank's actions packed
};

/// A 64-bit fingerprint of a schedule and its costs (for bucketing and for reports).
std::uint64_t fingerprint(const schedule::Schedule& schedule, const cost::StepCosts& costs);

}  // namespace pipeweaver::semu
