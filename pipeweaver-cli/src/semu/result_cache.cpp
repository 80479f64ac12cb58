#include "semu/result_cache.hpp"

namespace pipeweaver::semu {

namespace {

struct Hasher {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  void add(std::uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0x100000001b3ULL;
  }
  void add(const std::vector<std::int64_t>& v) {
    add(v.size());
    for (const auto x : v) add(static_cast<std::uint64_t>(x));
  }
};

bool same_costs(const StepCosts& a, const StepCosts& b) {
  return a.n_stages == b.n_stages && a.n_microbatches == b.n_microbatches && a.f_ns == b.f_ns && a.b_ns == b.b_ns &&
         a.i_ns == b.i_ns && a.w_ns == b.w_ns && a.send_f_ns == b.send_f_ns && a.send_b_ns == b.send_b_ns &&
         a.act_bytes == b.act_bytes && a.act_w_bytes == b.act_w_bytes && a.static_bytes == b.static_bytes &&
         a.capacity_bytes == b.capacity_bytes;
}

}  // namespace

std::uint64_t fingerprint(const schedule::Schedule& s, const StepCosts& c) {
  Hasher h;
  h.add(static_cast<std::uint64_t>(s.n_ranks));
  h.add(static_cast<std::uint64_t>(s.n_microbatches));
  for (const auto& ch : s.chunks) h.add((static_cast<std::uint64_t>(ch.rank) << 32) ^ static_cast<std::uint64_t>(ch.layer_end));
  for (const auto& r : s.rank_actions) {
    h.add(r.size());
    for (const auto& a : r)
      h.add((static_cast<std::uint64_t>(a.stage) << 40) ^ (static_cast<std::uint64_t>(a.op) << 32) ^
            static_cast<std::uint64_t>(a.microbatch));
  }
  for (const auto* v : {&c.f_ns, &c.b_ns, &c.i_ns, &c.w_ns, &c.send_f_ns, &c.send_b_ns, &c.act_bytes, &c.act_w_bytes,
                        &c.static_bytes, &c.capacity_bytes})
    h.add(*v);
  return h.h;
}

const Result& ResultCache::simulate(const schedule::Schedule& s, const StepCosts& c, const Options& o) {
  ++lookups_;
  const std::uint64_t key = fingerprint(s, c) ^ (o.record_timeline ? 1ULL : 0ULL);
  auto [lo, hi] = entries_.equal_range(key);
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = *it->second;
    if (e.timeline == o.record_timeline && e.schedule == s && same_costs(e.costs, c)) {
      ++hits_;
      return e.result;
    }
  }
  if (entries_.size() >= max_entries_) entries_.clear();  // bounded; results never depend on it
  auto entry = std::make_unique<Entry>(Entry{s, c, o.record_timeline, semu::simulate(s, c, o)});
  return entries_.emplace(key, std::move(entry))->second->result;
}

}  // namespace pipeweaver::semu
