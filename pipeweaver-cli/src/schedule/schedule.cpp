#include "schedule/schedule.hpp"

#include <algorithm>
#include <sstream>

namespace pipeweaver::schedule {

std::size_t Schedule::n_actions() const {
  std::size_t n = 0;
  for (const auto& r : rank_actions) n += r.size();
  return n;
}

namespace {

std::string action_pointer(std::size_t rank, std::size_t step) {
  return "/actions/" + std::to_string(rank) + "/" + std::to_string(step);
}

std::string pass_name(const Action& a) {
  return "stage " + std::to_string(a.stage) + " microbatch " + std::to_string(a.microbatch);
}

// Per (stage, microbatch) pass counts and, during the dependency walk, completion flags.
struct PassTable {
  std::int32_t n_mb;
  std::vector<std::uint8_t> f, b, i, w;
  PassTable(std::int32_t stages, std::int32_t mbs)
      : n_mb(mbs),
        f(static_cast<std::size_t>(stages) * mbs),
        b(f.size()),
        i(f.size()),
        w(f.size()) {}
  std::size_t at(std::int32_t s, std::int32_t m) const { return static_cast<std::size_t>(s) * n_mb + m; }
  std::vector<std::uint8_t>& of(Op op) { return op == Op::F ? f : op == Op::B ? b : op == Op::I ? i : w; }
  // The input gradient of (s, m) exists: its B or its I has run.
  bool input_grad(std::int32_t s, std::int32_t m) const { return b[at(s, m)] || i[at(s, m)]; }
};

std::optional<Problem> check_structure(const Schedule& s) {
  if (s.n_ranks < 1) return Problem{"/ranks", "a schedule needs at least one rank", {}};
  if (s.n_microbatches < 1) return Problem{"/microbatches", "a schedule needs at least one microbatch", {}};
  if (s.chunks.empty()) return Problem{"/chunks", "a schedule needs at least one chunk (virtual stage)", {}};
  if (static_cast<std::int32_t>(s.rank_actions.size()) != s.n_ranks)
    return Problem{"/actions", "expected one action list per rank (" + std::to_string(s.n_ranks) + "), got " +
                                   std::to_string(s.rank_actions.size()), {}};
  for (std::size_t c = 0; c < s.chunks.size(); ++c) {
    const Chunk& ch = s.chunks[c];
    const std::string p = "/chunks/" + std::to_string(c);
    if (ch.rank < 0 || ch.rank >= s.n_ranks)
      return Problem{p + "/rank", "rank " + std::to_string(ch.rank) + " does not exist (the schedule has " +
                                      std::to_string(s.n_ranks) + " ranks)", {}};
    if (ch.layer_begin < 0 || ch.layer_end <= ch.layer_begin)
      return Problem{p + "/layers", "expected a non-empty layer range [begin, end), got [" +
                                        std::to_string(ch.layer_begin) + ", " + std::to_string(ch.layer_end) + ")", {}};
  }
  if (!s.microbatch_samples.empty() &&
      static_cast<std::int32_t>(s.microbatch_samples.size()) != s.n_microbatches)
    return Problem{"/microbatch_samples", "expected one sample list per microbatch (" +
                                              std::to_string(s.n_microbatches) + "), got " +
                                              std::to_string(s.microbatch_samples.size()), {}};
  return std::nullopt;
}

std::optional<Problem> check_counts(const Schedule& s, PassTable& counts) {
  for (std::size_t r = 0; r < s.rank_actions.size(); ++r) {
    for (std::size_t k = 0; k < s.rank_actions[r].size(); ++k) {
      const Action& a = s.rank_actions[r][k];
      const std::string p = action_pointer(r, k);
      if (a.stage < 0 || a.stage >= s.n_stages())
        return Problem{p, to_string(a) + ": stage " + std::to_string(a.stage) + " does not exist (the schedule has " +
                              std::to_string(s.n_stages()) + " stages)", {}};
      if (a.microbatch < 0 || a.microbatch >= s.n_microbatches)
        return Problem{p, to_string(a) + ": microbatch " + std::to_string(a.microbatch) +
                              " does not exist (the schedule has " + std::to_string(s.n_microbatches) +
                              " microbatches)", {}};
      const std::int32_t placed = s.chunks[static_cast<std::size_t>(a.stage)].rank;
      if (placed != static_cast<std::int32_t>(r))
        return Problem{p, to_string(a) + " runs on rank " + std::to_string(r) + " but stage " +
                              std::to_string(a.stage) + " is placed on rank " + std::to_string(placed), {}};
      auto& n = counts.of(a.op)[counts.at(a.stage, a.microbatch)];
      if (n == 1)
        return Problem{p, to_string(a) + ": " + pass_name(a) + " already has its " + op_char(a.op) +
                              " pass; each pass runs exactly once", {}};
      n = 1;
    }
  }
  for (std::int32_t st = 0; st < s.n_stages(); ++st) {
    for (std::int32_t m = 0; m < s.n_microbatches; ++m) {
      const std::size_t x = counts.at(st, m);
      const std::string name = "stage " + std::to_string(st) + " microbatch " + std::to_string(m);
      if (!counts.f[x]) return Problem{"/actions", name + " has no forward pass (" + std::to_string(st) + "F" + std::to_string(m) + ")", {}};
      if (counts.b[x] && (counts.i[x] || counts.w[x]))
        return Problem{"/actions", name + " has both a full backward (B) and a split one (I/W)", {}};
      if (!counts.b[x] && !(counts.i[x] && counts.w[x]))
        return Problem{"/actions", name + " has no complete backward: expected one B, or one I and one W", {}};
    }
  }
  return std::nullopt;
}

}  // namespace

std::string format_grid(const Schedule& s, const std::vector<std::int64_t>& stuck) {
  std::size_t width = 3;
  std::size_t steps = 0;
  for (const auto& r : s.rank_actions) {
    steps = std::max(steps, r.size());
    for (const auto& a : r) width = std::max(width, to_string(a).size());
  }
  std::ostringstream out;
  const std::string rank_col = "rank " + std::to_string(s.n_ranks - 1);
  out << std::string(rank_col.size(), ' ') << " |";
  for (std::size_t k = 0; k < steps; ++k) {
    std::string h = std::to_string(k);
    out << ' ' << std::string(width + 2 - h.size(), ' ') << h;
  }
  out << '\n';
  for (std::size_t r = 0; r < s.rank_actions.size(); ++r) {
    std::string label = "rank " + std::to_string(r);
    out << label << std::string(rank_col.size() - label.size(), ' ') << " |";
    for (std::size_t k = 0; k < s.rank_actions[r].size(); ++k) {
      std::string a = to_string(s.rank_actions[r][k]);
      bool mark = r < stuck.size() && stuck[r] == static_cast<std::int64_t>(k);
      std::string cell = mark ? "[" + a + "]" : " " + a + " ";
      out << ' ' << std::string(width + 2 - cell.size(), ' ') << cell;
    }
    out << '\n';
  }
  return out.str();
}

std::optional<Problem> find_problem(const Schedule& s) {
  if (auto p = check_structure(s)) return p;
  PassTable counts(s.n_stages(), s.n_microbatches);
  if (auto p = check_counts(s, counts)) return p;

  // Walk the ranks' orders with zero-time passes: a pass runs once its inputs exist.
  const std::int32_t last = s.n_stages() - 1;
  PassTable done(s.n_stages(), s.n_microbatches);
  auto ready = [&](const Action& a) {
    switch (a.op) {
      case Op::F: return a.stage == 0 || done.f[done.at(a.stage - 1, a.microbatch)] != 0;
      case Op::B:
      case Op::I:
        return done.f[done.at(a.stage, a.microbatch)] && (a.stage == last || done.input_grad(a.stage + 1, a.microbatch));
      case Op::W: return done.i[done.at(a.stage, a.microbatch)] != 0;
    }
    return false;
  };
  std::vector<std::size_t> next(s.rank_actions.size(), 0);
  std::size_t remaining = s.n_actions();
  while (remaining > 0) {
    bool progress = false;
    for (std::size_t r = 0; r < s.rank_actions.size(); ++r) {
      const auto& list = s.rank_actions[r];
      while (next[r] < list.size() && ready(list[next[r]])) {
        const Action& a = list[next[r]];
        done.of(a.op)[done.at(a.stage, a.microbatch)] = 1;
        ++next[r];
        --remaining;
        progress = true;
      }
    }
    if (progress) continue;

    // Stuck. A pass that waits on a pass later in its own rank's list is an ordering error;
    // otherwise the ranks wait on each other in a cycle: a deadlock.
    std::vector<std::int64_t> stuck(s.rank_actions.size(), -1);
    for (std::size_t r = 0; r < s.rank_actions.size(); ++r) {
      if (next[r] >= s.rank_actions[r].size()) continue;
      stuck[r] = static_cast<std::int64_t>(next[r]);
      const Action& a = s.rank_actions[r][next[r]];
      Action need = a;
      if (a.op == Op::W) need.op = Op::I;
      else if (a.op != Op::F) need.op = Op::F;
      else continue;
      if (a.op != Op::W && done.f[done.at(a.stage, a.microbatch)]) continue;  // waits on another stage
      return Problem{action_pointer(r, next[r]),
                     to_string(a) + " on rank " + std::to_string(r) + " comes before " + to_string(need) +
                         ", which it needs",
                     {}};
    }
    std::ostringstream msg;
    msg << "deadlock: no rank can proceed after " << (s.n_actions() - remaining) << " of " << s.n_actions()
        << " actions; waiting:";
    for (std::size_t r = 0; r < stuck.size(); ++r)
      if (stuck[r] >= 0) msg << " rank " << r << " on " << to_string(s.rank_actions[r][static_cast<std::size_t>(stuck[r])]);
    return Problem{"/actions", msg.str(), format_grid(s, stuck)};
  }
  return std::nullopt;
}

common::Json to_json(const Schedule& s) {
  common::Json j;
  j["version"] = 1;
  j["ranks"] = s.n_ranks;
  j["microbatches"] = s.n_microbatches;
  j["chunks"] = common::Json::array();
  for (const auto& c : s.chunks) {
    common::Json chunk = {{"module", c.module}, {"layers", {c.layer_begin, c.layer_end}}, {"rank", c.rank}};
    if (c.recompute) chunk["recompute"] = true;  // absent = false: older files read the same
    j["chunks"].push_back(std::move(chunk));
  }
  if (!s.microbatch_samples.empty()) j["microbatch_samples"] = s.microbatch_samples;
  j["actions"] = common::Json::array();
  for (const auto& r : s.rank_actions) {
    common::Json list = common::Json::array();
    for (const auto& a : r) list.push_back(to_string(a));
    j["actions"].push_back(std::move(list));
  }
  return j;
}

Schedule schedule_from_json(const common::JsonView& root) {
  common::require_version(root, "pipeweaver schedule", 1, 1);
  root.allow_only({"version", "ranks", "microbatches", "chunks", "microbatch_samples", "actions", "notes"});
  Schedule s;
  s.n_ranks = static_cast<std::int32_t>(root.at("ranks").as_int(1, 1 << 16));
  s.n_microbatches = static_cast<std::int32_t>(root.at("microbatches").as_int(1, 1 << 20));
  for (const auto& c : root.at("chunks").items()) {
    c.allow_only({"module", "layers", "rank", "recompute"});
    Chunk ch;
    ch.module = c.at("module").as_string();
    auto layers = c.at("layers");
    if (!layers.is_array() || layers.size() != 2) layers.fail("a layer range [begin, end)");
    ch.layer_begin = static_cast<std::int32_t>(layers.at(0).as_int(0, 1 << 20));
    ch.layer_end = static_cast<std::int32_t>(layers.at(1).as_int(0, 1 << 20));
    ch.rank = static_cast<std::int32_t>(c.at("rank").as_nonnegative_int());
    ch.recompute = c.bool_or("recompute", false);
    s.chunks.push_back(std::move(ch));
  }
  if (auto packing = root.find("microbatch_samples")) {
    for (const auto& mb : packing->items()) {
      std::vector<std::int32_t> samples;
      for (const auto& x : mb.items()) samples.push_back(static_cast<std::int32_t>(x.as_int(0, 1 << 30)));
      s.microbatch_samples.push_back(std::move(samples));
    }
  }
  for (const auto& r : root.at("actions").items()) {
    std::vector<Action> list;
    for (const auto& a : r.items()) list.push_back(parse_action(a.as_string(), a.where()));
    s.rank_actions.push_back(std::move(list));
  }
  if (auto problem = find_problem(s)) {
    throw common::InputError::message(root.where().with_pointer(problem->pointer), problem->message,
                                      problem->detail.empty() ? std::string() : "rank x step grid, stuck actions in brackets:\n" + problem->detail);
  }
  return s;
}

Schedule load_schedule(const std::string& path) {
  common::Json doc = common::load_json_file(path);
  return schedule_from_json(common::json_root(doc, path));
}

void check_microbatch_samples(const Schedule& s, std::size_t n_samples, std::int64_t batch_index,
                              const common::Where& where) {
  std::vector<int> seen(n_samples, -1);
  for (std::size_t mb = 0; mb < s.microbatch_samples.size(); ++mb)
    for (std::size_t j = 0; j < s.microbatch_samples[mb].size(); ++j) {
      const std::int32_t i = s.microbatch_samples[mb][j];
      const std::string ptr = "/microbatch_samples/" + std::to_string(mb) + "/" + std::to_string(j);
      if (static_cast<std::size_t>(i) >= n_samples)
        throw common::InputError::message(where.with_pointer(ptr), "sample " + std::to_string(i) +
                                                                        " does not exist (batch " +
                                                                        std::to_string(batch_index) + " has " +
                                                                        std::to_string(n_samples) + " samples)");
      if (seen[static_cast<std::size_t>(i)] >= 0)
        throw common::InputError::message(where.with_pointer(ptr), "sample " + std::to_string(i) +
                                                                        " is already in microbatch " +
                                                                        std::to_string(seen[static_cast<std::size_t>(i)]));
      seen[static_cast<std::size_t>(i)] = static_cast<int>(mb);
    }
  for (std::size_t i = 0; i < n_samples; ++i)
    if (seen[i] < 0)
      throw common::InputError::message(where.with_pointer("/microbatch_samples"),
                                        "sample " + std::to_string(i) + " of batch " + std::to_string(batch_index) +
                                            " is in no microbatch");
}

}  // namespace pipeweaver::schedule
