// Temporal reuse of whole emulations: a batch whose schedule and costs repeat exactly is
// not played again. Keys are compared in full (a hash only picks the bucket), so a hit
// returns exactly what simulate() would.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "semu/semu.hpp"

namespace pipeweaver::semu {

class ResultCache {
 public:
  explicit ResultCache(std::size_t max_entries = 256) : max_entries_(max_entries) {}
  ResultCache(const ResultCache&) = delete;
  ResultCache& operator=(const ResultCache&) = delete;

  /// simulate(schedule, costs, options), or the stored result of an identical call.
  const Result& simulate(const schedule::Schedule& schedule, const StepCosts& costs, const Options& options = {});

  std::int64_t lookups() const { return lookups_; }
  std::int64_t hits() const { return hits_; }
  double hit_rate() const { return lookups_ ? static_cast<double>(hits_) / static_cast<double>(lookups_) : 0.0; }

 private:
  struct Entry {
    schedule::Schedule schedule;
    StepCosts costs;
    bool timeline;
    Result result;
  };
  std::size_t max_entries_;
  std::unordered_multimap<std::uint64_t, std::unique_ptr<Entry>> entries_;
  std::int64_t lookups_ = 0, hits_ = 0;
};

/// A 64-bit fingerprint of a schedule and its costs (for bucketing and for reports).
std::uint64_t fingerprint(const schedule::Schedule& schedule, const StepCosts& costs);

}  // namespace pipeweaver::semu
