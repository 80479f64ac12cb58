// The event core of SEMU: a min-heap of (time, sequence number) so that events at the same
// time pop in the order they were scheduled (deterministic ties), and time never goes
// backwards.
#pragma once

#include <cstdint>
#include <queue>
#include <vector>

#include "common/errors.hpp"

namespace pipeweaver::semu {

template <class Payload>
class EventQueue {
 public:
  struct Event {
    std::int64_t time_ns;
    std::uint64_t seq;
    Payload payload;
  };

  std::int64_t now() const { return now_ns_; }
  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }

  /// Schedules `payload` at absolute time `time_ns` (>= now).
  void schedule(std::int64_t time_ns, const Payload& payload) {
    PWPI_CHECK_MSG(time_ns >= now_ns_, "an event may not be scheduled in the past");
    heap_.push(Event{time_ns, next_seq_++, payload});
  }

  /// Pops the earliest event and advances now to its time.
  Event step() {
    PWPI_CHECK(!heap_.empty());
    Event e = heap_.top();
    heap_.pop();
    now_ns_ = e.time_ns;
    return e;
  }

  void clear() {
    heap_ = {};
    now_ns_ = 0;
    next_seq_ = 0;
  }
  void reserve(std::size_t n) {
    std::vector<Event> storage;
    storage.reserve(n);
    heap_ = Heap(Later{}, std::move(storage));
  }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.time_ns != b.time_ns ? a.time_ns > b.time_ns : a.seq > b.seq;
    }
  };
  using Heap = std::priority_queue<Event, std::vector<Event>, Later>;
  Heap heap_;
  std::int64_t now_ns_ = 0;
  std::uint64_t next_seq_ = 0;
};

}  // namespace pipeweaver::semu
