// The event loop plays exactly the event order of the plain method (semu/reference.cpp:
// every event in (time, sequence number) order, numbers taken in scheduling order) but
// queues only the events that can do something:
// - a pass's end on its rank (one per action);
// - a transfer's arrival only when the receiving rank is idle waiting for it. Every other
//   arrival would find its rank busy or waiting for something else, so it only needs to be
//   visible to later readiness checks: its (time, number) is stored, and "arrived" is
//   "(time, number) <= that of the event being handled".
// So the queue holds at most one event per rank, and the run state lives in a workspace
// reused from call to call.
#include "semu/semu.hpp"

#include <algorithm>
#include <limits>

#include "semu/event_queue.hpp"

namespace pipeweaver::semu {

using schedule::Action;
using schedule::Op;

namespace {

constexpr std::int64_t kNotSent = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kLocal = -1;  // arrival time of stage 0's inputs and same-rank hand-overs

// Bits of a (stage, microbatch)'s state. Not a char type: stores to it may not alias the
// pointers the loop keeps in registers.
enum class Done : std::uint32_t { none = 0, f = 1, i = 2 };
Done operator|(Done a, Done b) { return static_cast<Done>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b)); }
bool has(Done a, Done b) { return (static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b)) != 0; }

struct RankState {
  const Action* actions;   // this rank's order
  std::size_t n_actions;
  std::size_t next;        // index of the pass running or due next
  std::int64_t send_free;  // when its send link is free
  std::int64_t recv_free;  // when its receive link is free
  std::int64_t act_now;    // activation bytes held
  std::int64_t act_mbs_now;
  std::int64_t waiting;    // 2 x + (1 backward) of an input not sent yet that the idle rank needs; -1
  bool running;
};

std::uint32_t pass_end(std::size_t rank) { return static_cast<std::uint32_t>(2 * rank + 1); }
std::uint32_t input_arrival(std::size_t rank) { return static_cast<std::uint32_t>(2 * rank); }

}  // namespace

struct Workspace::State {
  // Per (stage, microbatch): when its forward input / backward input gradient arrives, as
  // (time, sequence number) (kNotSent: not sent yet), and which passes are done.
  std::vector<std::int64_t> fwd_t, bwd_t;
  std::vector<std::uint32_t> fwd_seq, bwd_seq;
  std::vector<Done> done;
  std::vector<RankState> ranks;
  std::vector<std::int32_t> stage_rank;
  EventQueue<std::uint32_t> q;
};

Workspace::Workspace() : state_(std::make_unique<State>()) {}
Workspace::~Workspace() = default;

namespace {

// kTimeline: record the timeline and memory samples (a template argument, so the plain
// run carries no test for it).
template <bool kTimeline>
class Emulator {
 public:
  Emulator(const schedule::Schedule& s, const cost::StepCosts& c, Workspace::State& w)
      : s_(s), c_(c), q_(w.q), n_ranks_(static_cast<std::size_t>(s.n_ranks)), last_stage_(s.n_stages() - 1) {
    PWPI_CHECK_MSG(c.n_stages == s.n_stages() && c.n_microbatches == s.n_microbatches,
                   "costs are sized for another schedule");
    PWPI_CHECK(c.static_bytes.size() == n_ranks_ && c.capacity_bytes.size() == n_ranks_);
    PWPI_CHECK(s.rank_actions.size() == n_ranks_);
    const std::size_t n = static_cast<std::size_t>(s.n_stages()) * static_cast<std::size_t>(s.n_microbatches);
    PWPI_CHECK(c.f_ns.size() == n && c.b_ns.size() == n && c.i_ns.size() == n && c.w_ns.size() == n &&
               c.send_f_ns.size() == n && c.send_b_ns.size() == n && c.act_bytes.size() == n && c.act_w_bytes.size() == n);
    w.fwd_t.assign(n, kNotSent);
    w.bwd_t.assign(n, kNotSent);
    w.fwd_seq.resize(n);
    w.bwd_seq.resize(n);
    w.done.assign(n, Done::none);
    w.ranks.resize(n_ranks_);
    for (std::size_t r = 0; r < n_ranks_; ++r)
      w.ranks[r] = RankState{s.rank_actions[r].data(), s.rank_actions[r].size(), 0, 0, 0, 0, 0, -1, false};
    w.stage_rank.resize(s.chunks.size());
    for (std::size_t st = 0; st < s.chunks.size(); ++st) w.stage_rank[st] = s.chunks[st].rank;
    w.q.clear();
    w.q.reserve(n_ranks_ + 1);
    fwd_t_ = w.fwd_t.data();
    bwd_t_ = w.bwd_t.data();
    fwd_seq_ = w.fwd_seq.data();
    bwd_seq_ = w.bwd_seq.data();
    done_ = w.done.data();
    ranks_ = w.ranks.data();
    stage_rank_ = w.stage_rank.data();
    r_.busy_ns.assign(n_ranks_, 0);
    r_.peak_mem_bytes = c.static_bytes;
    r_.peak_act_microbatches.assign(n_ranks_, 0);
    r_.n_actions = static_cast<std::int64_t>(s.n_actions());
    busy_ = r_.busy_ns.data();
    peak_mem_ = r_.peak_mem_bytes.data();
    peak_mbs_ = r_.peak_act_microbatches.data();
    for (std::int32_t m = 0; m < s.n_microbatches; ++m) fwd_t_[c.at(0, m)] = kLocal;  // stage 0 reads the batch
  }

  Result run() {
    for (std::size_t r = 0; r < n_ranks_; ++r) try_start(r);
    while (!q_.empty()) {
      const auto e = q_.step();
      now_ = e.time_ns;
      now_seq_ = e.seq;
      const std::size_t rank = e.payload >> 1;
      if (e.payload & 1) finish(rank);
      try_start(rank);
    }
    r_.step_ns = step_ns_;
    r_.p2p_ns = p2p_ns_;
    r_.n_transfers = n_transfers_;
    for (std::size_t r = 0; r < n_ranks_; ++r)
      PWPI_CHECK_MSG(ranks_[r].next == ranks_[r].n_actions, "SEMU stalled: validate the schedule first");

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
  std::size_t at(std::int32_t stage, std::int32_t mb) const { return c_.at(stage, mb); }

  // Whether an arrival at (t, seq) comes no later than the event being handled.
  bool arrived(std::int64_t t, std::uint32_t seq) const { return t < now_ || (t == now_ && seq <= now_seq_); }

  // The idle rank needs input x (backward: the gradient) before its next pass.
  void wait_for(std::size_t rank, std::size_t x, bool backward) {
    const std::int64_t t = backward ? bwd_t_[x] : fwd_t_[x];
    if (t == kNotSent) ranks_[rank].waiting = static_cast<std::int64_t>(2 * x + (backward ? 1 : 0));
    else q_.schedule_taken(t, backward ? bwd_seq_[x] : fwd_seq_[x], input_arrival(rank));
  }

  void change_memory(std::size_t rank, std::int64_t delta_bytes, int delta_mbs) {
    RankState& rs = ranks_[rank];
    rs.act_now += delta_bytes;
    rs.act_mbs_now += delta_mbs;
    const std::int64_t total = static_bytes_[rank] + rs.act_now;
    peak_mem_[rank] = std::max(peak_mem_[rank], total);
    peak_mbs_[rank] = std::max(peak_mbs_[rank], rs.act_mbs_now);
    if constexpr (kTimeline) r_.memory.push_back({static_cast<std::int32_t>(rank), now_, total});
  }

  void try_start(std::size_t rank) {
    RankState& rs = ranks_[rank];
    if (rs.running || rs.next >= rs.n_actions) return;
    const Action& a = rs.actions[rs.next];
    const std::size_t x = at(a.stage, a.microbatch);
    std::int64_t d = 0;
    switch (a.op) {
      case Op::F:
        if (!arrived(fwd_t_[x], fwd_seq_[x])) return wait_for(rank, x, false);
        d = f_ns_[x];
        change_memory(rank, act_bytes_[x], +1);
        break;
      case Op::B:
      case Op::I:
        if (!has(done_[x], Done::f)) return;
        if (a.stage != last_stage_ && !arrived(bwd_t_[x], bwd_seq_[x])) return wait_for(rank, x, true);
        d = a.op == Op::B ? b_ns_[x] : i_ns_[x];
        break;
      case Op::W:
        if (!has(done_[x], Done::i)) return;
        d = w_ns_[x];
        break;
    }
    rs.running = true;
    if constexpr (kTimeline)
      r_.timeline.push_back({TimelineEvent::Kind::compute, static_cast<std::int32_t>(rank),
                             static_cast<std::int32_t>(rank), a, now_, now_ + d});
    busy_[rank] += d;
    q_.schedule(now_ + d, pass_end(rank));
  }

  void send(std::size_t from, std::int32_t to_stage, std::int32_t mb, std::int64_t d, bool forward,
            const Action& producer) {
    const std::size_t to = static_cast<std::size_t>(stage_rank_[static_cast<std::size_t>(to_stage)]);
    const std::size_t x = at(to_stage, mb);
    std::int64_t& arrival = forward ? fwd_t_[x] : bwd_t_[x];
    if (to == from) {  // same device: the tensor is already there
      arrival = kLocal;
      return;
    }
    RankState& src = ranks_[from];
    RankState& dst = ranks_[to];
    const std::int64_t start = std::max({now_, src.send_free, dst.recv_free});
    const std::int64_t end = start + d;
    src.send_free = end;
    dst.recv_free = end;
    p2p_ns_ += d;
    ++n_transfers_;
    if constexpr (kTimeline)
      r_.timeline.push_back({TimelineEvent::Kind::transfer, static_cast<std::int32_t>(from),
                             static_cast<std::int32_t>(to), producer, start, end});
    const std::uint32_t seq = q_.take_seq();
    arrival = end;
    (forward ? fwd_seq_ : bwd_seq_)[x] = seq;
    if (dst.waiting == static_cast<std::int64_t>(2 * x + (forward ? 0 : 1))) {
      dst.waiting = -1;
      q_.schedule_taken(end, seq, input_arrival(to));
    }
  }

  void finish(std::size_t rank) {
    RankState& rs = ranks_[rank];
    const Action a = rs.actions[rs.next];
    rs.running = false;
    ++rs.next;
    step_ns_ = std::max(step_ns_, now_);
    const std::size_t x = at(a.stage, a.microbatch);
    switch (a.op) {
      case Op::F:
        done_[x] = done_[x] | Done::f;
        if (a.stage < last_stage_) send(rank, a.stage + 1, a.microbatch, send_f_ns_[x], true, a);
        break;
      case Op::B:
      case Op::I:
        done_[x] = done_[x] | Done::i;
        if (a.op == Op::B) change_memory(rank, -act_bytes_[x], -1);
        else change_memory(rank, -(act_bytes_[x] - act_w_bytes_[x]), 0);
        if (a.stage > 0) send(rank, a.stage - 1, a.microbatch, send_b_ns_[x], false, a);
        break;
      case Op::W: change_memory(rank, -act_w_bytes_[x], -1); break;
    }
  }

  const schedule::Schedule& s_;
  const cost::StepCosts& c_;
  EventQueue<std::uint32_t>& q_;
  const std::size_t n_ranks_;
  const std::int32_t last_stage_;
  // The costs and the run state as plain arrays.
  const std::int64_t* f_ns_ = c_.f_ns.data();
  const std::int64_t* b_ns_ = c_.b_ns.data();
  const std::int64_t* i_ns_ = c_.i_ns.data();
  const std::int64_t* w_ns_ = c_.w_ns.data();
  const std::int64_t* send_f_ns_ = c_.send_f_ns.data();
  const std::int64_t* send_b_ns_ = c_.send_b_ns.data();
  const std::int64_t* act_bytes_ = c_.act_bytes.data();
  const std::int64_t* act_w_bytes_ = c_.act_w_bytes.data();
  const std::int64_t* static_bytes_ = c_.static_bytes.data();
  std::int64_t *fwd_t_ = nullptr, *bwd_t_ = nullptr;
  std::uint32_t *fwd_seq_ = nullptr, *bwd_seq_ = nullptr;
  Done* done_ = nullptr;
  RankState* ranks_ = nullptr;
  const std::int32_t* stage_rank_ = nullptr;
  std::int64_t *busy_ = nullptr, *peak_mem_ = nullptr, *peak_mbs_ = nullptr;
  std::int64_t now_ = 0;       // time of the event being handled
  std::uint32_t now_seq_ = 0;  // its sequence number
  std::int64_t step_ns_ = 0, p2p_ns_ = 0, n_transfers_ = 0;
  Result r_;
};

}  // namespace

Result simulate(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options,
                Workspace& workspace) {
  if (options.record_timeline) return Emulator<true>(schedule, costs, workspace.state()).run();
  return Emulator<false>(schedule, costs, workspace.state()).run();
}

Result simulate(const schedule::Schedule& schedule, const cost::StepCosts& costs, const Options& options) {
  thread_local Workspace workspace;
  return simulate(schedule, costs, options, workspace);
}

}  // namespace pipeweaver::semu
