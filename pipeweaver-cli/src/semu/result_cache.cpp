#include "semu/result_cache.hpp"

#include <cstring>

#include "common/errors.hpp"

namespace pipeweaver::semu {

namespace {

// Feeds a sink everything simulate() reads, in a fixed order: one(x) for single values,
// many(p, n) for arrays (the bulk of it: actions packed one per value, then the costs).
template <class Sink>
void visit(const schedule::Schedule& s, const cost::StepCosts& c, std::vector<std::int64_t>& packed, Sink& sink) {
  PWPI_CHECK(s.chunks.size() < (std::size_t{1} << 29));  // stages fit the packing below
  sink.one(s.n_ranks);
  sink.one(s.n_microbatches);
  sink.one(static_cast<std::int64_t>(s.chunks.size()));
  for (const auto& ch : s.chunks) sink.one(ch.rank);
  for (const auto& actions : s.rank_actions) {
    // (stage, op, microbatch) -> one value: stage and microbatch are non-negative int32.
    packed.resize(actions.size());
    for (std::size_t i = 0; i < actions.size(); ++i) {
      const auto& a = actions[i];
      packed[i] = static_cast<std::int64_t>(
          (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a.stage)) << 34) |
          (static_cast<std::uint64_t>(a.op) << 32) | static_cast<std::uint64_t>(static_cast<std::uint32_t>(a.microbatch)));
    }
    sink.one(static_cast<std::int64_t>(actions.size()));
    sink.many(packed.data(), packed.size());
  }
  sink.one(c.n_stages);
  sink.one(c.n_microbatches);
  for (const auto* v : {&c.f_ns, &c.b_ns, &c.i_ns, &c.w_ns, &c.send_f_ns, &c.send_b_ns, &c.act_bytes, &c.act_w_bytes,
                        &c.static_bytes, &c.capacity_bytes}) {
    sink.one(static_cast<std::int64_t>(v->size()));
    sink.many(v->data(), v->size());
  }
}

// Four independent multiply-rotate lanes over the arrays (not a dependency chain per value).
struct Hasher {
  std::uint64_t lane[4] = {0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL, 0x165667b19e3779f9ULL, 0xd6e8feb86659fd93ULL};
  static std::uint64_t step(std::uint64_t h, std::int64_t x) {
    h = (h ^ static_cast<std::uint64_t>(x)) * 0xbf58476d1ce4e5b9ULL;
    return (h << 31) | (h >> 33);
  }
  void one(std::int64_t x) { lane[0] = step(lane[0], x); }
  void many(const std::int64_t* p, std::size_t n) {
    // Lanes in locals: p may alias the members (int64 / uint64), which would chain every
    // step through memory.
    std::uint64_t a = lane[0], b = lane[1], c = lane[2], d = lane[3];
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4) {
      a = step(a, p[i]);
      b = step(b, p[i + 1]);
      c = step(c, p[i + 2]);
      d = step(d, p[i + 3]);
    }
    for (; i < n; ++i) a = step(a, p[i]);
    lane[0] = a;
    lane[1] = b;
    lane[2] = c;
    lane[3] = d;
  }
  std::uint64_t value() const {
    std::uint64_t h = lane[0];
    for (int k = 1; k < 4; ++k) h = step(h, static_cast<std::int64_t>(lane[k]));
    h ^= h >> 31;
    h *= 0x94d049bb133111ebULL;
    return h ^ (h >> 29);
  }
};

// Appends to a key sized beforehand (no growth checks in the loop).
struct Writer {
  std::int64_t* out;
  void one(std::int64_t x) { *out++ = x; }
  void many(const std::int64_t* p, std::size_t n) {
    if (n) std::memcpy(out, p, n * sizeof(std::int64_t));
    out += n;
  }
};

std::size_t key_size(const schedule::Schedule& s, const cost::StepCosts& c) {
  std::size_t n = 3 + s.chunks.size() + s.rank_actions.size() + 2;
  for (const auto& actions : s.rank_actions) n += actions.size();
  for (const auto* v : {&c.f_ns, &c.b_ns, &c.i_ns, &c.w_ns, &c.send_f_ns, &c.send_b_ns, &c.act_bytes, &c.act_w_bytes,
                        &c.static_bytes, &c.capacity_bytes})
    n += 1 + v->size();
  return n;
}

struct Comparer {
  const std::int64_t* key;
  std::size_t size;
  std::size_t pos = 0;
  bool same = true;
  void one(std::int64_t x) {
    same = same && pos < size && key[pos] == x;
    ++pos;
  }
  void many(const std::int64_t* p, std::size_t n) {
    same = same && pos + n <= size && (n == 0 || std::memcmp(key + pos, p, n * sizeof(std::int64_t)) == 0);
    pos += n;
  }
};

}  // namespace

std::uint64_t fingerprint(const schedule::Schedule& s, const cost::StepCosts& c) {
  Hasher h;
  thread_local std::vector<std::int64_t> packed;
  visit(s, c, packed, h);
  return h.value();
}

const Result& ResultCache::simulate(const schedule::Schedule& s, const cost::StepCosts& c, const Options& o) {
  ++lookups_;
  const std::uint64_t key = fingerprint(s, c) ^ (o.record_timeline ? 1ULL : 0ULL);
  auto [lo, hi] = entries_.equal_range(key);
  for (auto it = lo; it != hi; ++it) {
    const Entry& e = *it->second;
    if (e.timeline != o.record_timeline) continue;
    Comparer cmp{e.key.get(), e.key_size};
    visit(s, c, packed_, cmp);
    if (cmp.same && cmp.pos == e.key_size) {
      ++hits_;
      return e.result;
    }
  }
  const std::size_t n = key_size(s, c);
  // Bounded; results never depend on it. Evicted entries keep their storage for reuse.
  if (entries_.size() >= max_entries_ || key_bytes_ + n * sizeof(std::int64_t) > max_key_bytes_) {
    for (auto& kv : entries_) spare_.push_back(std::move(kv.second));
    entries_.clear();
    key_bytes_ = 0;
  }
  std::unique_ptr<Entry> entry;
  if (spare_.empty()) {
    entry = std::make_unique<Entry>();
  } else {
    entry = std::move(spare_.back());
    spare_.pop_back();
  }
  if (entry->key_capacity < n) {
    entry->key.reset(new std::int64_t[n]);  // uninitialised: written in full below
    entry->key_capacity = n;
  }
  entry->key_size = n;
  Writer w{entry->key.get()};
  visit(s, c, packed_, w);
  PWPI_CHECK(w.out == entry->key.get() + n);
  key_bytes_ += n * sizeof(std::int64_t);
  entry->timeline = o.record_timeline;
  entry->result = semu::simulate(s, c, o);
  return entries_.emplace(key, std::move(entry))->second->result;
}

}  // namespace pipeweaver::semu
