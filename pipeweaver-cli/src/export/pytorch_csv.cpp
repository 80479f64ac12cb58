#include "export/pytorch_csv.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <tuple>
#include <vector>

#include "common/errors.hpp"
#include "schedule/action.hpp"

namespace pipeweaver::exporting {

using schedule::Action;
using schedule::Op;

std::string to_pytorch_csv(const schedule::Schedule& s) {
  const auto problem = schedule::find_problem(s);
  PWPI_CHECK_MSG(!problem, "to_pytorch_csv needs a valid schedule: " + (problem ? problem->message : std::string()));
  std::string out;
  for (std::int32_t r = 0; r < s.n_ranks; ++r) {
    const auto& list = s.rank_actions[static_cast<std::size_t>(r)];
    if (list.empty())
      throw common::UsageError("cannot export to PyTorch: rank " + std::to_string(r) +
                                   " runs no action, and PyTorch's pipelining runtime needs every rank of the "
                                   "pipeline group to hold at least one stage",
                               "place at least one chunk on every rank");
    for (std::size_t i = 0; i < list.size(); ++i) {
      if (i > 0) out += ',';
      out += schedule::to_string(list[i]);
    }
    out += '\n';
  }
  const std::string check = validate_pytorch_csv(out, s.n_microbatches);
  PWPI_CHECK_MSG(check.empty(), "exported PyTorch CSV does not validate: " + check);
  return out;
}

namespace {

// Python's str.strip() whitespace, enough for CSV cells.
std::string_view strip(std::string_view t) {
  constexpr std::string_view ws = " \t\r\n\f\v";
  const auto b = t.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return t.substr(b, t.find_last_not_of(ws) - b + 1);
}

std::vector<std::string_view> split(std::string_view t, char sep) {
  std::vector<std::string_view> out;
  std::size_t begin = 0;
  for (;;) {
    const auto end = t.find(sep, begin);
    if (end == std::string_view::npos) {
      out.push_back(t.substr(begin));
      return out;
    }
    out.push_back(t.substr(begin, end - begin));
    begin = end + 1;
  }
}

// Marks in the lowering check: the compute passes plus the receives a sender puts on its peer.
enum Mark : int { mark_f, mark_b, mark_i, mark_w, mark_recv_f, mark_recv_b };

int mark_of(Op op) {
  switch (op) {
    case Op::F: return mark_f;
    case Op::B: return mark_b;
    case Op::I: return mark_i;
    case Op::W: return mark_w;
  }
  return mark_f;
}

}  // namespace

std::string validate_pytorch_csv(std::string_view text, std::int32_t n_microbatches) {
  // Parse: rows are lines ("\n" or "\r\n"); a final line break does not start a row.
  std::vector<std::string_view> lines = split(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  if (lines.empty()) return "no rows: expected one row per pipeline rank";
  std::vector<std::vector<Action>> rows(lines.size());
  for (std::size_t r = 0; r < lines.size(); ++r) {
    std::string_view line = lines[r];
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::vector<std::string_view> cells = split(line, ',');
    for (std::size_t c = 0; c < cells.size(); ++c) {
      const std::string where = "row " + std::to_string(r) + ", cell " + std::to_string(c) + ": ";
      const std::string_view cell = strip(cells[c]);
      if (cell.empty()) continue;  // idle
      const auto digits = std::min(cell.find_first_not_of("0123456789"), cell.size());
      const std::string_view kind = cell.substr(digits);
      for (const char* comm : {"UNSHARD", "RESHARD", "REDUCE_GRAD", "SEND_F", "RECV_F", "SEND_B", "RECV_B"})
        if (digits > 0 && kind.starts_with(comm))
          return where + "\"" + std::string(cell) + "\" is a communication action; compute_only rows hold F, B, I and W only";
      Action a;
      try {
        a = schedule::parse_action(cell, common::Where());
      } catch (const common::InputError&) {
        return where + "expected an action such as 2F0 ({stage}{F|B|I|W}{microbatch}), got \"" + std::string(cell) + "\"";
      }
      if (a.microbatch >= n_microbatches)
        return where + std::string(cell) + ": microbatch " + std::to_string(a.microbatch) + " does not exist (" +
               std::to_string(n_microbatches) + " microbatches)";
      rows[r].push_back(a);
    }
  }

  // Placement and per-pass order, scanning rank by rank as PyTorch's _validate_schedule does.
  std::int32_t n_stages = 0;
  for (const auto& row : rows)
    for (const Action& a : row) n_stages = std::max(n_stages, a.stage + 1);
  std::vector<std::int32_t> rank_of(static_cast<std::size_t>(n_stages), -1);
  // [stage][mb] bit set of passes seen: 1 F, 2 B, 4 I, 8 W.
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(n_stages) * static_cast<std::size_t>(n_microbatches), 0);
  std::vector<std::array<std::int32_t, 4>> counts(static_cast<std::size_t>(n_stages), {0, 0, 0, 0});
  for (std::size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].empty())
      return "row " + std::to_string(r) + ": no action; PyTorch's runtime needs at least one on every rank";
    for (std::size_t i = 0; i < rows[r].size(); ++i) {
      const Action& a = rows[r][i];
      const std::string where = "row " + std::to_string(r) + ", action " + std::to_string(i) + " (" + schedule::to_string(a) + "): ";
      auto& owner = rank_of[static_cast<std::size_t>(a.stage)];
      if (owner >= 0 && owner != static_cast<std::int32_t>(r))
        return where + "stage " + std::to_string(a.stage) + " also runs on rank " + std::to_string(owner) +
               "; each stage runs on exactly one rank";
      owner = static_cast<std::int32_t>(r);
      std::uint8_t& bits = seen[static_cast<std::size_t>(a.stage) * static_cast<std::size_t>(n_microbatches) +
                                static_cast<std::size_t>(a.microbatch)];
      const std::uint8_t bit = static_cast<std::uint8_t>(1u << mark_of(a.op));
      if (bits & bit) return where + "runs twice";
      if ((a.op == Op::B || a.op == Op::I) && !(bits & 1u)) return where + "runs before its forward";
      if (a.op == Op::W && !(bits & 4u)) return where + "runs before its input-gradient pass (I)";
      bits |= bit;
      ++counts[static_cast<std::size_t>(a.stage)][static_cast<std::size_t>(mark_of(a.op))];
    }
  }
  for (std::int32_t st = 0; st < n_stages; ++st) {
    const auto& c = counts[static_cast<std::size_t>(st)];
    const std::string name = "stage " + std::to_string(st) + ": ";
    if (c[mark_f] != n_microbatches)
      return name + std::to_string(c[mark_f]) + " forwards, expected " + std::to_string(n_microbatches) +
             (c[mark_f] == 0 ? " (stages are numbered 0 to the largest index in the file)" : "");
    if (c[mark_i] != c[mark_w])
      return name + "I and W counts differ (I=" + std::to_string(c[mark_i]) + ", W=" + std::to_string(c[mark_w]) + ")";
    if (c[mark_b] + (c[mark_i] + c[mark_w]) / 2 != n_microbatches)
      return name + "expected " + std::to_string(n_microbatches) + " backwards (B + (I + W) / 2), got B=" +
             std::to_string(c[mark_b]) + ", I=" + std::to_string(c[mark_i]) + ", W=" + std::to_string(c[mark_w]);
  }

  // Lowering to sends and receives (_add_send_recv): every sweep, each rank issues its next
  // pass if its input is local or was received; a sender puts the receive on its peer.
  using Key = std::tuple<int, std::int32_t, std::int32_t>;  // (mark, stage, mb)
  std::vector<std::set<Key>> done(rows.size());
  std::vector<std::size_t> next(rows.size(), 0);
  const std::int32_t last = n_stages - 1;
  auto ready = [&](std::size_t r, const Action& a) {
    const auto& d = done[r];
    if (a.op == Op::F && a.stage != 0)
      return d.count({mark_recv_f, a.stage, a.microbatch}) || d.count({mark_f, a.stage - 1, a.microbatch});
    if ((a.op == Op::I || a.op == Op::B) && a.stage != last)
      return d.count({mark_recv_b, a.stage, a.microbatch}) || d.count({mark_i, a.stage + 1, a.microbatch}) ||
             d.count({mark_b, a.stage + 1, a.microbatch});
    return true;
  };
  for (bool progress = true; progress;) {
    progress = false;
    for (std::size_t r = 0; r < rows.size(); ++r) {
      if (next[r] >= rows[r].size()) continue;
      const Action& a = rows[r][next[r]];
      if (!ready(r, a)) continue;
      done[r].insert({mark_of(a.op), a.stage, a.microbatch});
      if (a.op == Op::F && a.stage != last) {
        const auto to = static_cast<std::size_t>(rank_of[static_cast<std::size_t>(a.stage + 1)]);
        if (to != r) done[to].insert({mark_recv_f, a.stage + 1, a.microbatch});
      } else if ((a.op == Op::I || a.op == Op::B) && a.stage != 0) {
        const auto to = static_cast<std::size_t>(rank_of[static_cast<std::size_t>(a.stage - 1)]);
        if (to != r) done[to].insert({mark_recv_b, a.stage - 1, a.microbatch});
      }
      ++next[r];
      progress = true;
    }
  }
  for (std::size_t r = 0; r < rows.size(); ++r)
    if (next[r] < rows[r].size())
      return "row " + std::to_string(r) + ", action " + std::to_string(next[r]) + " (" +
             schedule::to_string(rows[r][next[r]]) +
             "): waits forever for its input; PyTorch's lowering fails (\"Malformed compute schedule\")";
  return {};
}

}  // namespace pipeweaver::exporting
