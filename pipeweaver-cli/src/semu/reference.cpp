// The straightforward SEMU, kept as the reference the fast emulator (semu.cpp) is tested
// against bit for bit: every arrival is an event, state is allocated per call.
#include "semu/reference.hpp"

#include <algorithm>

#include "semu/event_queue.hpp"

namespace pipeweaver::semu {

using schedule::Action;
using schedule::Op;

namespace {

struct Payload {
  enum class Kind : std::uint8_t { action_done, arrival_fwd, arrival_bwd } kind;
  std::int32_t rank;   // action_done: the rank; arrival: the receiving rank
  std::int32_t stage;  // arrival: the stage whose input arrived
  std::int32_t mb;
};

class Emulator {
 public:
  Emulator(const schedule::Schedule& s, const cost::StepCosts& c, const Options& o)
      : s_(s), c_(c), o_(o), n_ranks_(static_cast<std::size_t>(s.n_ranks)), last_stage_(s.n_stages() - 1) {
    PWPI_CHECK_MSG(c.n_stages == s.n_stages() && c.n_microbatches == s.n_microbatches,
                   "costs are sized for another schedule");
    PWPI_CHECK(c.static_bytes.size() == n_ranks_ && c.capacity_bytes.size() == n_ranks_);
    const std::size_t n = static_cast<std::size_t>(s.n_stages()) * static_cast<std::size_t>(s.n_microbatches);
    fwd_in_.assign(n, 0);
    bwd_in_.assign(n, 0);
    f_done_.assign(n, 0);
    i_done_.assign(n, 0);
    next_.assign(n_ranks_, 0);
    running_.assign(n_ranks_, 0);
    send_free_.assign(n_ranks_, 0);
    recv_free_.assign(n_ranks_, 0);
    act_now_.assign(n_ranks_, 0);
    act_mbs_now_.assign(n_ranks_, 0);
    r_.busy_ns.assign(n_ranks_, 0);
    r_.peak_mem_bytes = c.static_bytes;
    r_.peak_act_microbatches.assign(n_ranks_, 0);
    r_.n_actions = static_cast<std::int64_t>(s.n_actions());
    for (std::int32_t m = 0; m < s.n_microbatches; ++m) fwd_in_[c.at(0, m)] = 1;  // stage 0 reads the batch
    q_.reserve(2 * n_ranks_ + 16);
  }

  Result run() {
    for (std::size_t r = 0; r < n_ranks_; ++r) try_start(r);
    while (!q_.empty()) {
      auto e = q_.step();
      const Payload& p = e.payload;
      const std::size_t rank = static_cast<std::size_t>(p.rank);
      switch (p.kind) {
        case Payload::Kind::action_done: finish(rank); break;
        case Payload::Kind::arrival_fwd: fwd_in_[c_.at(p.stage, p.mb)] = 1; break;
        case Payload::Kind::arrival_bwd: bwd_in_[c_.at(p.stage, p.mb)] = 1; break;
      }
      try_start(rank);
    }
    for (std::size_t r = 0; r < n_ranks_; ++r)
      PWPI_CHECK_MSG(next_[r] == s_.rank_actions[r].size(), "SEMU stalled: validate the schedule first");

    std::int64_t idle_total = 0;
    r_.idle_ns.resize(n_ranks_);
    for (std::size_t r = 0; r < n_ranks_; ++r) {
      r_.idle_ns[r] = r_.step_ns - r_.busy_ns[r];
      idle_total += r_.idle_ns[r];
      const std::int64_t cap = c_.capacity_bytes[r];
      if (cap > 0 && r_.peak_mem_bytes[r] > cap) r_.exceeds_memory = true;
    }
    const double denom = static_cast<double>(r_.step_ns) * static_cast<double>(n_ranks_);
    r_.bubble_ratio = denom > 0 ? static_cast<double>(idle_total) / denom : 0.0;
    return std::move(r_);
  }

 private:
  std::int64_t duration(const Action& a) const {
    const std::size_t x = c_.at(a.stage, a.microbatch);
    switch (a.op) {
      case Op::F: return c_.f_ns[x];
      case Op::B: return c_.b_ns[x];
      case Op::I: return c_.i_ns[x];
      case Op::W: return c_.w_ns[x];
    }
    return 0;
  }

  bool ready(const Action& a) const {
    const std::size_t x = c_.at(a.stage, a.microbatch);
    switch (a.op) {
      case Op::F: return fwd_in_[x] != 0;
      case Op::B:
      case Op::I: return f_done_[x] && (a.stage == last_stage_ || bwd_in_[x]);
      case Op::W: return i_done_[x] != 0;
    }
    return false;
  }

  void change_memory(std::size_t rank, std::int64_t delta_bytes, int delta_mbs) {
    act_now_[rank] += delta_bytes;
    act_mbs_now_[rank] += delta_mbs;
    const std::int64_t total = c_.static_bytes[rank] + act_now_[rank];
    r_.peak_mem_bytes[rank] = std::max(r_.peak_mem_bytes[rank], total);
    r_.peak_act_microbatches[rank] = std::max<std::int64_t>(r_.peak_act_microbatches[rank], act_mbs_now_[rank]);
    if (o_.record_timeline) r_.memory.push_back({static_cast<std::int32_t>(rank), q_.now(), total});
  }

  void try_start(std::size_t rank) {
    if (running_[rank] || next_[rank] >= s_.rank_actions[rank].size()) return;
    const Action& a = s_.rank_actions[rank][next_[rank]];
    if (!ready(a)) return;
    running_[rank] = 1;
    const std::int64_t d = duration(a);
    if (a.op == Op::F) change_memory(rank, c_.act_bytes[c_.at(a.stage, a.microbatch)], +1);
    if (o_.record_timeline)
      r_.timeline.push_back({TimelineEvent::Kind::compute, static_cast<std::int32_t>(rank),
                             static_cast<std::int32_t>(rank), a, q_.now(), q_.now() + d});
    r_.busy_ns[rank] += d;
    q_.schedule(q_.now() + d, Payload{Payload::Kind::action_done, static_cast<std::int32_t>(rank), 0, 0});
  }

  void send(std::size_t from, std::int32_t to_stage, std::int32_t mb, std::int64_t d, bool forward,
            const Action& producer) {
    const std::size_t to = static_cast<std::size_t>(s_.chunks[static_cast<std::size_t>(to_stage)].rank);
    const auto kind = forward ? Payload::Kind::arrival_fwd : Payload::Kind::arrival_bwd;
    if (to == from) {  // same device: the tensor is already there
      (forward ? fwd_in_ : bwd_in_)[c_.at(to_stage, mb)] = 1;
      return;
    }
    const std::int64_t start = std::max({q_.now(), send_free_[from], recv_free_[to]});
    const std::int64_t end = start + d;
    send_free_[from] = end;
    recv_free_[to] = end;
    r_.p2p_ns += d;
    ++r_.n_transfers;
    if (o_.record_timeline)
      r_.timeline.push_back({TimelineEvent::Kind::transfer, static_cast<std::int32_t>(from),
                             static_cast<std::int32_t>(to), producer, start, end});
    q_.schedule(end, Payload{kind, static_cast<std::int32_t>(to), to_stage, mb});
  }

  void finish(std::size_t rank) {
    const Action a = s_.rank_actions[rank][next_[rank]];
    running_[rank] = 0;
    ++next_[rank];
    r_.step_ns = std::max(r_.step_ns, q_.now());
    const std::size_t x = c_.at(a.stage, a.microbatch);
    switch (a.op) {
      case Op::F:
        f_done_[x] = 1;
        if (a.stage < last_stage_) send(rank, a.stage + 1, a.microbatch, c_.send_f_ns[x], true, a);
        break;
      case Op::B:
      case Op::I:
        i_done_[x] = 1;
        if (a.op == Op::B) change_memory(rank, -c_.act_bytes[x], -1);
        else change_memory(rank, -(c_.act_bytes[x] - c_.act_w_bytes[x]), 0);
        if (a.stage > 0) send(rank, a.stage - 1, a.microbatch, c_.send_b_ns[x], false, a);
        break;
      case Op::W: change_memory(rank, -c_.act_w_bytes[x], -1); break;
    }
  }

  const schedule::Schedule& s_;
  const cost::StepCosts& c_;
  const Options& o_;
  const std::size_t n_ranks_;
  const std::int32_t last_stage_;
  EventQueue<Payload> q_;
  // Per (stage, microbatch): inputs arrived, passes done.
  std::vector<std::uint8_t> fwd_in_, bwd_in_, f_done_, i_done_;
  // Per rank.
  std::vector<std::size_t> next_;
  std::vector<std::uint8_t> running_;
  std::vector<std::int64_t> send_free_, recv_free_, act_now_;
  std::vector<int> act_mbs_now_;
  Result r_;
};

}  // namespace

Result simulate_reference(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options) {
  return Emulator(schedule, costs, options).run();
}

}  // namespace pipeweaver::semu
