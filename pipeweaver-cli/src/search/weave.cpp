#include "search/weave.hpp"

#include <algorithm>
#include <limits>
#include <vector>

#include "common/errors.hpp"

namespace pipeweaver::search {

namespace {

using schedule::Action;
using schedule::Op;

constexpr std::int64_t kNever = std::numeric_limits<std::int64_t>::max();

struct Pending {
  std::int32_t stage;
  std::int32_t mb;
  Op op;
  std::int64_t arrival;  // when its inputs are on this rank
  std::int64_t key = 0;  // priority (lower first), set by push()
};

class Weaver {
 public:
  Weaver(schedule::Schedule& s, const cost::StepCosts& c, const WeavePolicy& p)
      : s_(s), c_(c), policy_(p), n_st_(s.n_stages()), n_mb_(s.n_microbatches), p_(s.n_ranks) {
    const auto P = static_cast<std::size_t>(p_);
    forward_.assign(P, {});
    backward_.assign(P, {});
    w_heap_.assign(P, {});
    free_at_.assign(P, 0);
    busy_until_.assign(P, 0);
    remaining_.assign(P, 0);
    held_.assign(P, 0);
    in_flight_.assign(P, 0);
    first_stage_.assign(P, -1);
    cap_.assign(P, kNever);
    const auto cells = static_cast<std::size_t>(n_st_) * static_cast<std::size_t>(n_mb_);
    f_end_.assign(cells, -1);
    for (std::int32_t st = 0; st < n_st_; ++st) {
      const auto r = static_cast<std::size_t>(rank(st));
      if (first_stage_[r] < 0) first_stage_[r] = st;
      remaining_[r] += n_mb_ * (policy_.split_backward ? 3 : 2);
    }
    for (std::size_t r = 0; r < P; ++r) {
      const std::int64_t capacity = r < c_.capacity_bytes.size() ? c_.capacity_bytes[r] : 0;
      if (capacity > 0) cap_[r] = capacity - (r < c_.static_bytes.size() ? c_.static_bytes[r] : 0);
    }
    admit_cap_ = cap_;
    if (bounded()) {
      // Room for the largest growth of one I (act -> act_w) on each rank, kept free.
      std::vector<std::int64_t> growth(P, 0);
      for (std::int32_t st = 0; st < n_st_; ++st)
        for (std::int32_t mb = 0; mb < n_mb_; ++mb) {
          const std::size_t x = c_.at(st, mb);
          auto& g = growth[static_cast<std::size_t>(rank(st))];
          g = std::max(g, c_.act_w_bytes[x] - c_.act_bytes[x]);
        }
      for (std::size_t r = 0; r < P; ++r)
        if (cap_[r] != kNever) admit_cap_[r] = cap_[r] - growth[r];
    }
    backward_left_.assign(P * static_cast<std::size_t>(n_mb_), 0);
    reserve_.assign(P * static_cast<std::size_t>(n_mb_), 0);
    for (std::int32_t st = 0; st < n_st_; ++st)
      for (std::int32_t mb = 0; mb < n_mb_; ++mb) {
        const std::size_t k = rm(rank(st), mb);
        ++backward_left_[k];
        reserve_[k] += held_bytes(c_.at(st, mb));
      }
    s_.rank_actions.assign(P, {});
    for (std::size_t r = 0; r < P; ++r) s_.rank_actions[r].reserve(static_cast<std::size_t>(remaining_[r]));
    for (std::int32_t mb = 0; mb < n_mb_; ++mb)
      if (n_st_ > 0) push(rank(0), {0, mb, Op::F, 0});
  }

  // Event loop: the rank that can act earliest acts (ties: the lowest rank). A rank with
  // nothing runnable sleeps until its next known arrival, or until a pass elsewhere sends it
  // work (push() wakes it).
  void run() {
    const auto P = static_cast<std::size_t>(p_);
    std::int64_t left = 0;
    for (const std::int64_t x : remaining_) left += x;
    while (left > 0) {
      std::size_t r = P;
      for (std::size_t k = 0; k < P; ++k)
        if (remaining_[k] > 0 && (r == P || free_at_[k] < free_at_[r])) r = k;
      PWPI_CHECK_MSG(r < P && free_at_[r] != kNever, "the weaver found no runnable pass: its admission rule failed");
      const std::int64_t t = free_at_[r];
      if (run_one(static_cast<std::int32_t>(r), t)) {
        --left;
        continue;
      }
      std::int64_t next = kNever;
      for (const auto* list : {&forward_[r], &backward_[r]})
        for (const Pending& e : *list)
          if (e.arrival > t) next = std::min(next, e.arrival);
      free_at_[r] = next;
    }
  }

 private:
  std::int32_t rank(std::int32_t st) const { return s_.chunks[static_cast<std::size_t>(st)].rank; }
  // The most a pass set holds at once: its activations until the backward, then (split)
  // what W still reads - more than the activations under recomputation.
  // (Bounded W: only the activations; an I's growth is checked when it runs.)
  std::int64_t held_bytes(std::size_t x) const {
    return policy_.split_backward && !bounded() ? std::max(c_.act_bytes[x], c_.act_w_bytes[x]) : c_.act_bytes[x];
  }
  bool bounded() const { return policy_.split_backward && policy_.w_bounded_by_memory; }
  std::size_t rm(std::int32_t r, std::int32_t mb) const {
    return static_cast<std::size_t>(r) * static_cast<std::size_t>(n_mb_) + static_cast<std::size_t>(mb);
  }
  void push(std::int32_t r, Pending e) {
    const auto R = static_cast<std::size_t>(r);
    e.key = key(e);
    if (e.op == Op::W) {
      w_heap_[R].push_back({e.key, e});
      std::push_heap(w_heap_[R].begin(), w_heap_[R].end(), heap_after);
    } else {
      (e.op == Op::F ? forward_[R] : backward_[R]).push_back(e);
    }
    free_at_[R] = std::min(free_at_[R], std::max(e.arrival, busy_until_[R]));
  }
  using Keyed = std::pair<std::int64_t, Pending>;
  static bool heap_after(const Keyed& a, const Keyed& b) { return a.first > b.first; }

  bool admissible(std::int32_t r, const Pending& e) const {
    const auto R = static_cast<std::size_t>(r);
    if (e.stage != first_stage_[R]) return true;  // the microbatch was admitted at its first chunk here
    if (in_flight_[R] == 0) return true;          // always room for one (else nothing could progress)
    if (policy_.max_in_flight > 0 && in_flight_[R] >= policy_.max_in_flight) return false;
    return admit_cap_[R] == kNever || held_[R] + reserve_[rm(r, e.mb)] <= admit_cap_[R];
  }

  // Priority: lower is better.
  std::int64_t key(const Pending& e) const {
    const std::int64_t M = n_mb_, S = n_st_;
    switch (e.op) {
      case Op::B:
      case Op::I: return static_cast<std::int64_t>(e.mb) * S + (S - 1 - e.stage);
      case Op::F:
        return policy_.forward == ForwardOrder::breadth ? static_cast<std::int64_t>(e.mb) * S + e.stage
                                                        : static_cast<std::int64_t>(S - 1 - e.stage) * M + e.mb;
      case Op::W: return static_cast<std::int64_t>(e.mb) * S + e.stage;
    }
    return 0;
  }

  // The best ready entry of `list` (lowest key; forwards must be admissible), or size().
  std::size_t pick(const std::vector<Pending>& list, std::int32_t r, std::int64_t t) const {
    std::size_t best = list.size();
    std::int64_t best_key = std::numeric_limits<std::int64_t>::max();
    for (std::size_t j = 0; j < list.size(); ++j) {
      const Pending& e = list[j];
      // Keys are distinct within a list, so testing admission last picks the same entry.
      if (e.arrival > t || e.key >= best_key) continue;
      if (e.op == Op::F && !admissible(r, e)) continue;
      best = j;
      best_key = e.key;
    }
    return best;
  }

  // Backward first, then forwards, then deferred W.
  bool run_one(std::int32_t r, std::int64_t t) {
    const auto R = static_cast<std::size_t>(r);
    for (auto* list : {&backward_[R], &forward_[R]}) {
      const std::size_t j = pick(*list, r, t);
      if (j == list->size()) continue;
      const Pending e = (*list)[j];
      if (bounded() && e.op == Op::I && cap_[R] != kNever && !w_heap_[R].empty()) {
        const std::size_t x = c_.at(e.stage, e.mb);
        if (held_[R] + c_.act_w_bytes[x] - c_.act_bytes[x] > cap_[R]) break;  // a W frees memory first
      }
      (*list)[j] = list->back();
      list->pop_back();
      execute(r, e, t);
      return true;
    }
    if (w_heap_[R].empty()) return false;
    std::pop_heap(w_heap_[R].begin(), w_heap_[R].end(), heap_after);
    const Pending e = w_heap_[R].back().second;
    w_heap_[R].pop_back();
    execute(r, e, t);
    return true;
  }

  void execute(std::int32_t r, const Pending& e, std::int64_t t) {
    const auto R = static_cast<std::size_t>(r);
    const std::size_t x = c_.at(e.stage, e.mb);
    std::int64_t dur = 0;
    switch (e.op) {
      case Op::F: dur = c_.f_ns[x]; break;
      case Op::B: dur = c_.b_ns[x]; break;
      case Op::I: dur = c_.i_ns[x]; break;
      case Op::W: dur = c_.w_ns[x]; break;
    }
    const std::int64_t end = t + dur;
    free_at_[R] = end;
    busy_until_[R] = end;
    --remaining_[R];
    s_.rank_actions[R].push_back(Action{e.stage, e.op, e.mb});
    if (e.op == Op::F) {
      if (e.stage == first_stage_[R]) {
        ++in_flight_[R];
        held_[R] += reserve_[rm(r, e.mb)];
      }
      f_end_[x] = end;
      if (e.stage + 1 < n_st_) {
        const std::int32_t nr = rank(e.stage + 1);
        push(nr, {e.stage + 1, e.mb, Op::F, end + (nr != r ? c_.send_f_ns[x] : 0)});
      } else {
        push(r, {e.stage, e.mb, policy_.split_backward ? Op::I : Op::B, end});
      }
      return;
    }
    if (e.op == Op::W) {
      held_[R] -= c_.act_w_bytes[x];
      return;
    }
    // B or I.
    held_[R] -= e.op == Op::B ? held_bytes(x) : held_bytes(x) - c_.act_w_bytes[x];
    if (e.op == Op::I) push(r, {e.stage, e.mb, Op::W, end});
    if (--backward_left_[rm(r, e.mb)] == 0) --in_flight_[R];
    if (e.stage > 0) {
      const std::int32_t pr = rank(e.stage - 1);
      const std::size_t px = c_.at(e.stage - 1, e.mb);
      // The previous stage's backward needs its own forward (done: it precedes ours) and
      // our input gradient.
      push(pr, {e.stage - 1, e.mb, policy_.split_backward ? Op::I : Op::B,
                std::max(f_end_[px], end + (pr != r ? c_.send_b_ns[x] : 0))});
    }
  }

  schedule::Schedule& s_;
  const cost::StepCosts& c_;
  WeavePolicy policy_;
  std::int32_t n_st_, n_mb_, p_;
  std::vector<std::vector<Pending>> forward_, backward_;
  std::vector<std::vector<Keyed>> w_heap_;
  std::vector<std::int64_t> free_at_, busy_until_, remaining_, held_, cap_;
  std::vector<std::int64_t> admit_cap_;  // cap_ less the room kept for one I (bounded W)
  std::vector<std::int32_t> in_flight_, first_stage_;
  std::vector<std::int64_t> f_end_;
  std::vector<std::int32_t> backward_left_;
  std::vector<std::int64_t> reserve_;
};

}  // namespace

void weave(schedule::Schedule& s, const cost::StepCosts& costs, const WeavePolicy& policy) {
  PWPI_CHECK(costs.n_stages == s.n_stages() && costs.n_microbatches == s.n_microbatches);
  Weaver w(s, costs, policy);
  w.run();
}

}  // namespace pipeweaver::search
