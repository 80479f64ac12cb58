// The event core of SEMU: a min-heap of (time, sequence number) so that events at the same
// time pop in the order they were scheduled (deterministic ties), and time never goes
// backwards. A sequence number may be taken now and its event scheduled later (or never):
// SEMU numbers every arrival when the transfer is issued but queues only the arrivals some
// rank is waiting for, so the order of what is queued is the order of the full event list.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "common/errors.hpp"

namespace pipeweaver::semu {

template <class Payload>
class EventQueue {
 public:
  // Sequence numbers are 32-bit (a 16-byte event with a 4-byte payload): a run may number
  // 2^32 - 1 events, far more than any step's passes and transfers.
  struct Event {
    std::int64_t time_ns;
    std::uint32_t seq;
    Payload payload;
  };

  std::int64_t now() const { return now_ns_; }
  bool empty() const { return size() == 0; }
  std::size_t size() const { return heap_.size() - (handled_ ? 1 : 0); }

  /// Schedules `payload` at absolute time `time_ns` (>= now) with the next sequence number.
  void schedule(std::int64_t time_ns, const Payload& payload) { schedule_taken(time_ns, take_seq(), payload); }

  /// The next sequence number, for an event that may be scheduled later with it.
  std::uint32_t take_seq() {
    PWPI_CHECK_MSG(next_seq_ != std::numeric_limits<std::uint32_t>::max(), "event sequence numbers ran out");
    return next_seq_++;
  }
  /// Schedules `payload` at `time_ns` (>= now) with a number from take_seq().
  void schedule_taken(std::int64_t time_ns, std::uint32_t seq, const Payload& payload) {
    PWPI_CHECK_MSG(time_ns >= now_ns_, "an event may not be scheduled in the past");
    const Event e{time_ns, seq, payload};
    if (handled_) {  // the event just stepped still holds the root: replace it
      handled_ = false;
      sift_down(e);
      return;
    }
    std::size_t i = heap_.size();  // sift up from a hole at the end
    heap_.emplace_back();
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!earlier(e, heap_[parent])) break;
      heap_[i] = heap_[parent];
      i = parent;
    }
    heap_[i] = e;
  }

  /// Pops the earliest event and advances now to its time. (Its slot is reused by the next
  /// schedule() when that comes before the next step(): one sift instead of two.)
  Event step() {
    settle();
    PWPI_CHECK(!heap_.empty());
    handled_ = true;
    now_ns_ = heap_.front().time_ns;
    return heap_.front();
  }

  /// Empties the queue and restarts time and numbering at 0; keeps the storage.
  void clear() {
    heap_.clear();
    handled_ = false;
    now_ns_ = 0;
    next_seq_ = 0;
  }
  void reserve(std::size_t n) { heap_.reserve(n); }

 private:
  static bool earlier(const Event& a, const Event& b) {
    return a.time_ns != b.time_ns ? a.time_ns < b.time_ns : a.seq < b.seq;
  }
  // Places e at the root's hole and sifts it down.
  void sift_down(const Event& e) {
    const std::size_t n = heap_.size();
    std::size_t i = 0;
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
      if (!earlier(heap_[child], e)) break;
      heap_[i] = heap_[child];
      i = child;
    }
    heap_[i] = e;
  }
  // Removes the last stepped event if nothing has taken its slot.
  void settle() {
    if (!handled_) return;
    handled_ = false;
    const Event last = heap_.back();
    heap_.pop_back();
    if (!heap_.empty()) sift_down(last);
  }

  std::vector<Event> heap_;
  bool handled_ = false;  // heap_[0] is the event last returned by step()
  std::int64_t now_ns_ = 0;
  std::uint32_t next_seq_ = 0;
};

}  // namespace pipeweaver::semu
