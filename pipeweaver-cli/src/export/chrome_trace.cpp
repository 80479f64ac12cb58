#include "export/chrome_trace.hpp"

#include <unordered_map>

#include "common/file_io.hpp"

namespace pipeweaver::exporting {

using schedule::Op;
using semu::TimelineEvent;

namespace {

double us(std::int64_t ns) {
  return static_cast<double>(ns) / 1000.0;
}

common::Json meta(const char* name, std::int32_t pid, std::int32_t tid, common::Json args) {
  return {{"ph", "M"}, {"name", name}, {"pid", pid}, {"tid", tid}, {"args", std::move(args)}};
}

std::string layers_of(const schedule::Chunk& c) {
  std::string out(1, '[');  // appended: g++ 12 -O3 warns falsely on "[" + std::string
  out.append(std::to_string(c.layer_begin)).append(", ").append(std::to_string(c.layer_end)).append(")");
  return out;
}

}  // namespace

common::Json chrome_trace(const schedule::Schedule& s, const cost::StepCosts& costs, const semu::Result& r,
                          const ChromeTraceInfo& info) {
  common::Json events = common::Json::array();
  for (std::int32_t rank = 0; rank < s.n_ranks; ++rank) {
    events.push_back(meta("process_name", rank, 0, {{"name", "rank " + std::to_string(rank)}}));
    events.push_back(meta("process_sort_index", rank, 0, {{"sort_index", rank}}));
    events.push_back(meta("thread_name", rank, 0, {{"name", "compute"}}));
    events.push_back(meta("thread_name", rank, 1, {{"name", "send"}}));
    events.push_back({{"ph", "C"}, {"name", "memory"}, {"pid", rank}, {"tid", 0}, {"ts", 0.0},
                      {"args", {{"bytes", costs.static_bytes[static_cast<std::size_t>(rank)]}}}});
  }
  // Where each pass starts, to anchor the arrow heads: [stage * n_mb + mb] for F, and for B/I.
  const std::size_t n = static_cast<std::size_t>(s.n_stages()) * static_cast<std::size_t>(s.n_microbatches);
  std::vector<std::int64_t> f_start(n, -1), b_start(n, -1);
  for (const TimelineEvent& e : r.timeline) {
    if (e.kind != TimelineEvent::Kind::compute) continue;
    const std::size_t x = costs.at(e.action.stage, e.action.microbatch);
    if (e.action.op == Op::F) f_start[x] = e.start_ns;
    else if (e.action.op != Op::W) b_start[x] = e.start_ns;
  }
  std::int64_t flow_id = 0;
  for (const TimelineEvent& e : r.timeline) {
    const schedule::Action& a = e.action;
    const schedule::Chunk& chunk = s.chunks[static_cast<std::size_t>(a.stage)];
    const std::string kind(1, schedule::op_char(a.op));
    if (e.kind == TimelineEvent::Kind::compute) {
      events.push_back({{"ph", "X"},
                        {"name", kind + " mb" + std::to_string(a.microbatch) + " c" + std::to_string(a.stage)},
                        {"cat", kind},
                        {"pid", e.rank},
                        {"tid", 0},
                        {"ts", us(e.start_ns)},
                        {"dur", us(e.end_ns - e.start_ns)},
                        {"args",
                         {{"action", schedule::to_string(a)},
                          {"stage", a.stage},
                          {"module", chunk.module},
                          {"layers", layers_of(chunk)},
                          {"microbatch", a.microbatch},
                          {"dur_ns", e.end_ns - e.start_ns}}}});
      continue;
    }
    const bool forward = a.op == Op::F;
    const std::int32_t to_stage = forward ? a.stage + 1 : a.stage - 1;
    const std::string what = forward ? "act" : "grad";
    const std::string name = "send " + what + " mb" + std::to_string(a.microbatch) + " c" + std::to_string(a.stage) +
                             "->c" + std::to_string(to_stage);
    events.push_back({{"ph", "X"},
                      {"name", name},
                      {"cat", "send"},
                      {"pid", e.rank},
                      {"tid", 1},
                      {"ts", us(e.start_ns)},
                      {"dur", us(e.end_ns - e.start_ns)},
                      {"args",
                       {{"from_rank", e.rank},
                        {"to_rank", e.peer_rank},
                        {"from_stage", a.stage},
                        {"to_stage", to_stage},
                        {"microbatch", a.microbatch},
                        {"dur_ns", e.end_ns - e.start_ns}}}});
    const std::size_t x = costs.at(to_stage, a.microbatch);
    const std::int64_t consumer = forward ? f_start[x] : b_start[x];
    if (consumer < 0) continue;
    const std::string flow_name = "send " + what;
    ++flow_id;
    events.push_back({{"ph", "s"}, {"name", flow_name}, {"cat", "p2p"}, {"id", flow_id}, {"pid", e.rank},
                      {"tid", 1}, {"ts", us(e.start_ns)}});
    events.push_back({{"ph", "f"}, {"bp", "e"}, {"name", flow_name}, {"cat", "p2p"}, {"id", flow_id},
                      {"pid", e.peer_rank}, {"tid", 0}, {"ts", us(consumer)}});
  }
  for (const semu::MemorySample& m : r.memory)
    events.push_back({{"ph", "C"}, {"name", "memory"}, {"pid", m.rank}, {"tid", 0}, {"ts", us(m.time_ns)},
                      {"args", {{"bytes", m.bytes}}}});
  common::Json other = info.other;
  other["title"] = info.title;
  other["step_ms"] = static_cast<double>(r.step_ns) * 1e-6;
  other["bubble_ratio"] = r.bubble_ratio;
  other["generator"] = "pipeweaver-cli simulate (SEMU)";
  return {{"traceEvents", std::move(events)}, {"displayTimeUnit", "ms"}, {"otherData", std::move(other)}};
}

void write_chrome_trace(const std::string& path, const common::Json& trace) {
  common::write_file_atomic(path, trace.dump());
}

}  // namespace pipeweaver::exporting
