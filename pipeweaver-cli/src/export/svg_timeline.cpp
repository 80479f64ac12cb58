#include "export/svg_timeline.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string_view>
#include <vector>

#include "common/errors.hpp"

namespace pipeweaver::exporting {

using schedule::Op;
using semu::TimelineEvent;

namespace {

// Layout, in SVG user units (px).
constexpr double kWidth = 1280;
constexpr double kLeft = 78;   // rank labels live left of this
constexpr double kRight = 28;
constexpr double kPlotWidth = kWidth - kLeft - kRight;
constexpr double kHeadingHeight = 52;
constexpr double kPanelTitleHeight = 30;
constexpr double kPanelGap = 22;
constexpr double kAxisHeight = 44;
constexpr double kLegendRow = 22;

struct Rgb {
  int r, g, b;
};

Rgb parse_hex(std::string_view hex) {
  auto nib = [](char c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  auto byte = [&](std::size_t i) { return nib(hex[i]) * 16 + nib(hex[i + 1]); };
  return {byte(1), byte(3), byte(5)};
}

std::string hex(Rgb c) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "#%02x%02x%02x", c.r, c.g, c.b);
  return buf;
}

// t = 0 keeps c, t = 1 gives `to`.
Rgb mix(Rgb c, Rgb to, double t) {
  auto m = [t](int a, int b) { return static_cast<int>(std::lround(a + (b - a) * t)); };
  return {m(c.r, to.r), m(c.g, to.g), m(c.b, to.b)};
}

constexpr Rgb kBlack{0, 0, 0};
constexpr Rgb kWhite{255, 255, 255};

struct Family {
  const char* name;
  std::array<const char*, 3> shades;  // the k-th module of a family takes shades[k % 3]
};
constexpr std::array<Family, 4> kFamilies{{
    {"vision", {"#2f6fd6", "#1597c9", "#4b4fc4"}},
    {"audio", {"#2e9e4f", "#6f9f1f", "#14866f"}},
    {"projector", {"#8e57d8", "#c04fbf", "#6d43a8"}},
    {"llm", {"#ee7a1a", "#d9503f", "#c99a06"}},
}};
constexpr std::array<const char*, 6> kOtherColours{"#17a2a2", "#c2417a", "#8a6a3b", "#5f6f8f", "#9a9a12", "#b24d1f"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

std::string guess_family(const std::string& module) {
  const std::string n = lower(module);
  auto has = [&](std::initializer_list<const char*> keys) {
    return std::any_of(keys.begin(), keys.end(), [&](const char* k) { return n.find(k) != std::string::npos; });
  };
  if (has({"proj", "adapter", "connector", "resampler", "mlp"})) return "projector";
  if (has({"vis", "vit", "image", "img", "clip", "siglip", "video"})) return "vision";
  if (has({"audio", "whisper", "speech", "mel", "wav"})) return "audio";
  if (has({"llm", "lm", "text", "language", "decoder"})) return "llm";
  return {};
}

std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 16777619u;
  return h;
}

std::string escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        // Control characters are not allowed in XML 1.0 text.
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') out += ' ';
        else out += c;
    }
  }
  return out;
}

// A coordinate: fixed, two decimals, never NaN or infinite (callers guard divisions).
std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", std::isfinite(x) ? x : 0.0);
  return buf;
}

// Milliseconds for labels: up to `digits` decimals, trailing zeros trimmed.
std::string ms_label(double ms, int digits) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", digits, ms);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  return s == "-0" ? "0" : s;
}

// A step time for people: about 5 significant digits (16767 ms, 1065.1 ms, 23.456 ms).
std::string step_label(double ms) {
  return ms_label(ms, ms >= 10000 ? 0 : ms >= 1000 ? 1 : ms >= 100 ? 2 : 3);
}

// A panel's title cut at a comma (", ...") so that it and its stats fit on one line (about
// 8.5 px per title character at 14 px bold, 6.6 per stats character at 12 px).
std::string fitted_title(const std::string& title, std::size_t stats_chars) {
  const double room = kWidth - kLeft - 12 - 6.6 * static_cast<double>(stats_chars) - 8;
  const auto max_chars = static_cast<std::size_t>(std::max(24.0, room / 8.5));
  if (title.size() <= max_chars) return title;
  const std::size_t cut = title.rfind(", ", max_chars - 5);
  return title.substr(0, cut == std::string::npos ? max_chars - 5 : cut) + ", ...";
}

// 1-2-5 spacing giving at most about `target` intervals over [0, max_ms].
double nice_step(double max_ms, int target) {
  if (!(max_ms > 0)) return 1;
  const double raw = max_ms / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double f : {1.0, 2.0, 5.0, 10.0})
    if (f * mag >= raw) return f * mag;
  return 10 * mag;
}

int decimals_for(double step_ms) {
  if (step_ms >= 1) return 0;
  return std::min(6, static_cast<int>(std::ceil(-std::log10(step_ms))) + 1);
}

struct ModuleColours {
  std::string f, b, i, w_fill, w_line, w_pattern_id;
};

const char* pass_name(Op op) {
  switch (op) {
    case Op::F: return "forward";
    case Op::B: return "backward";
    case Op::I: return "input-gradient backward";
    case Op::W: return "weight-gradient backward";
  }
  return "";
}

}  // namespace

TimelineStyle TimelineStyle::of(const spec::ModelSpec& model) {
  TimelineStyle style;
  for (const spec::Module& m : model.modules) {
    switch (m.kind) {
      case spec::ModuleKind::encoder: style.module_family[m.name] = m.input == spec::EncoderInput::mel ? "audio" : "vision"; break;
      case spec::ModuleKind::projector: style.module_family[m.name] = "projector"; break;
      case spec::ModuleKind::llm: style.module_family[m.name] = "llm"; break;
    }
  }
  return style;
}

std::string timeline_svg(std::span<const TimelinePanel> panels, const std::string& heading, const TimelineStyle& style) {
  // Modules in order of first appearance, their colours, and the passes present.
  std::vector<std::string> modules;
  std::array<bool, 4> op_seen{};
  std::int64_t max_step_ns = 0;
  for (const TimelinePanel& p : panels) {
    PWPI_CHECK(p.schedule != nullptr && p.result != nullptr);
    PWPI_CHECK_MSG(p.result->timeline.size() >= p.schedule->n_actions() || p.schedule->n_actions() == 0,
                   "timeline_svg needs results simulated with Options::record_timeline");
    max_step_ns = std::max(max_step_ns, p.result->step_ns);
    for (const schedule::Chunk& c : p.schedule->chunks)
      if (std::find(modules.begin(), modules.end(), c.module) == modules.end()) modules.push_back(c.module);
    for (const TimelineEvent& e : p.result->timeline)
      if (e.kind == TimelineEvent::Kind::compute) op_seen[static_cast<std::size_t>(e.action.op)] = true;
  }
  std::map<std::string, ModuleColours> colours;
  std::map<std::string, int> family_count;
  for (std::size_t k = 0; k < modules.size(); ++k) {
    const std::string& m = modules[k];
    const auto given = style.module_family.find(m);
    const std::string family = given != style.module_family.end() ? given->second : guess_family(m);
    std::string base;
    for (const Family& f : kFamilies)
      if (family == f.name) base = f.shades[static_cast<std::size_t>(family_count[family]++ % 3)];
    if (base.empty()) base = kOtherColours[fnv1a(m) % kOtherColours.size()];
    const Rgb c = parse_hex(base);
    colours[m] = {hex(c), hex(mix(c, kBlack, 0.28)), hex(mix(c, kBlack, 0.45)), hex(mix(c, kWhite, 0.62)), hex(c),
                  "w" + std::to_string(k)};
  }

  const double span_ns = static_cast<double>(std::max<std::int64_t>(max_step_ns, 1));
  const double scale = kPlotWidth / span_ns;  // px per ns
  const double max_ms = span_ns * 1e-6;
  const double tick_ms = nice_step(max_ms, 12);
  const int tick_digits = decimals_for(tick_ms);

  // Vertical layout.
  std::vector<double> panel_top, row_h;
  double y = kHeadingHeight;
  for (const TimelinePanel& p : panels) {
    panel_top.push_back(y);
    const double h = p.schedule->n_ranks > 24 ? 14 : 20;
    row_h.push_back(h);
    y += kPanelTitleHeight + p.schedule->n_ranks * (h + 3) + kPanelGap;
  }
  const double plot_bottom = y - kPanelGap + 6;
  const double axis_y = plot_bottom + 4;
  const double legend_top = axis_y + kAxisHeight;
  // Legend: one group per module, flowing left to right and wrapping.
  const int n_ops_shown = static_cast<int>(std::count(op_seen.begin(), op_seen.end(), true));
  std::vector<std::pair<double, double>> legend_pos;  // (x, y) per module
  {
    double lx = kLeft, ly = legend_top + 18;
    for (const std::string& m : modules) {
      const double w = 12 + 7.0 * static_cast<double>(m.size()) + 36.0 * n_ops_shown + 28;
      if (lx + w > kWidth - kRight && lx > kLeft) {
        lx = kLeft;
        ly += kLegendRow;
      }
      legend_pos.push_back({lx, ly});
      lx += w;
    }
    y = (modules.empty() ? legend_top : ly) + kLegendRow + 8;
  }
  const double height = y;

  std::string o;
  std::size_t n_events = 0;
  for (const TimelinePanel& p : panels) n_events += p.result->timeline.size();
  o.reserve(8192 + 420 * n_events);
  o += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(kWidth) + "\" height=\"" + num(height) +
       "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) + "\" font-family=\"sans-serif\">\n";
  o += "<defs>\n";
  for (const std::string& m : modules) {
    const ModuleColours& c = colours[m];
    o += "<pattern id=\"" + c.w_pattern_id +
         "\" width=\"5\" height=\"5\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
         "<rect width=\"5\" height=\"5\" fill=\"" + c.w_fill + "\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"5\" stroke=\"" +
         c.w_line + "\" stroke-width=\"1.6\" stroke-opacity=\"0.55\"/></pattern>\n";
  }
  o += "</defs>\n";
  o += "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";
  o += "<text x=\"" + num(kLeft) + "\" y=\"26\" font-size=\"17\" font-weight=\"bold\" fill=\"#111\">" + escape(heading) +
       "</text>\n";
  o += "<text x=\"" + num(kLeft) + "\" y=\"44\" font-size=\"11\" fill=\"#555\">"
       "time in ms on one axis for all panels; coloured: compute passes (hover for details); light grey: idle (bubble)"
       "</text>\n";

  // Grid lines behind everything but the row backgrounds (drawn per panel below).
  std::string grid;
  const int n_ticks = static_cast<int>(std::floor(max_ms / tick_ms + 1e-9));
  for (int t = 0; t <= n_ticks; ++t) {
    const double x = kLeft + (t * tick_ms * 1e6) * scale;
    grid += "<line x1=\"" + num(x) + "\" y1=\"" + num(kHeadingHeight) + "\" x2=\"" + num(x) + "\" y2=\"" +
            num(axis_y) + "\" stroke=\"#c9ced6\" stroke-width=\"0.6\"/>\n";
  }

  // Pass 1: titles, rank labels and the idle-coloured row backgrounds of every panel;
  // pass 2, over the grid: the passes and the end-of-step markers.
  std::vector<std::string> stats_of(panels.size()), titles(panels.size());
  for (std::size_t pi = 0; pi < panels.size(); ++pi) {
    const TimelinePanel& p = panels[pi];
    const schedule::Schedule& s = *p.schedule;
    const semu::Result& r = *p.result;
    const double top = panel_top[pi];
    const double rh = row_h[pi];
    const double rows_top = top + kPanelTitleHeight;
    const double step_x = kLeft + static_cast<double>(r.step_ns) * scale;
    char stats[160];
    std::snprintf(stats, sizeof stats, "step %s ms · bubble %.1f%% · %d ranks · %d stages · %d microbatches",
                  step_label(static_cast<double>(r.step_ns) * 1e-6).c_str(), 100.0 * r.bubble_ratio, s.n_ranks,
                  s.n_stages(), s.n_microbatches);
    stats_of[pi] = stats;
    titles[pi] = fitted_title(p.title, std::strlen(stats));
    o += "<g class=\"panel\">\n";
    o += "<text x=\"" + num(kLeft) + "\" y=\"" + num(top + 18) + "\" font-size=\"14\" fill=\"#111\"><tspan font-weight=\"bold\">" +
         escape(titles[pi]) + "</tspan><tspan fill=\"#555\" font-size=\"12\" dx=\"12\">" + escape(stats) + "</tspan></text>\n";
    for (std::int32_t rank = 0; rank < s.n_ranks; ++rank) {
      const double ry = rows_top + rank * (rh + 3);
      o += "<text x=\"" + num(kLeft - 8) + "\" y=\"" + num(ry + rh / 2 + 4) +
           "\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">rank " + std::to_string(rank) + "</text>\n";
      o += "<rect x=\"" + num(kLeft) + "\" y=\"" + num(ry) + "\" width=\"" + num(step_x - kLeft) + "\" height=\"" + num(rh) +
           "\" fill=\"#eceef2\"/>\n";
    }
    o += "</g>\n";
  }
  o += grid;
  for (std::size_t pi = 0; pi < panels.size(); ++pi) {
    const schedule::Schedule& s = *panels[pi].schedule;
    const semu::Result& r = *panels[pi].result;
    const double rh = row_h[pi];
    const double rows_top = panel_top[pi] + kPanelTitleHeight;
    const double step_x = kLeft + static_cast<double>(r.step_ns) * scale;
    o += "<g class=\"passes\">\n";
    const double label_size = rh >= 18 ? 10 : 8.5;
    for (const TimelineEvent& e : r.timeline) {
      if (e.kind != TimelineEvent::Kind::compute) continue;
      const schedule::Action& a = e.action;
      const schedule::Chunk& chunk = s.chunks[static_cast<std::size_t>(a.stage)];
      const ModuleColours& c = colours[chunk.module];
      const double x = kLeft + static_cast<double>(e.start_ns) * scale;
      const double w = static_cast<double>(e.end_ns - e.start_ns) * scale;
      const double ry = rows_top + e.rank * (rh + 3);
      std::string fill;
      switch (a.op) {
        case Op::F: fill = c.f; break;
        case Op::B: fill = c.b; break;
        case Op::I: fill = c.i; break;
        case Op::W: fill = "url(#" + c.w_pattern_id + ")"; break;
      }
      char tip[320];
      std::snprintf(tip, sizeof tip, "rank %d · stage %d (%s layers %d-%d) · %c %s of microbatch %d · start %s ms · %s ms",
                    e.rank, a.stage, chunk.module.c_str(), chunk.layer_begin, chunk.layer_end - 1,
                    schedule::op_char(a.op), pass_name(a.op), a.microbatch,
                    ms_label(static_cast<double>(e.start_ns) * 1e-6, 3).c_str(),
                    ms_label(static_cast<double>(e.end_ns - e.start_ns) * 1e-6, 3).c_str());
      o += "<rect class=\"ev\" x=\"" + num(x) + "\" y=\"" + num(ry) + "\" width=\"" + num(w) + "\" height=\"" + num(rh) +
           "\" fill=\"" + fill + "\" stroke=\"#ffffff\" stroke-width=\"0.5\"><title>" + escape(tip) + "</title></rect>\n";
      const std::string label = std::string(1, schedule::op_char(a.op)) + std::to_string(a.microbatch);
      if (w >= 0.62 * label_size * static_cast<double>(label.size()) + 4)
        o += "<text x=\"" + num(x + w / 2) + "\" y=\"" + num(ry + rh / 2 + label_size * 0.36) + "\" font-size=\"" +
             num(label_size) + "\" text-anchor=\"middle\" fill=\"" + (a.op == Op::W ? "#222222" : "#ffffff") +
             "\" pointer-events=\"none\">" + label + "</text>\n";
    }
    // End of step.
    const double rows_bottom = rows_top + s.n_ranks * (rh + 3) - 3;
    o += "<line class=\"end\" x1=\"" + num(step_x) + "\" y1=\"" + num(rows_top - 6) + "\" x2=\"" + num(step_x) + "\" y2=\"" +
         num(rows_bottom + 4) + "\" stroke=\"#c0262d\" stroke-width=\"1.4\" stroke-dasharray=\"4 3\"/>\n";
    const std::string end_label = step_label(static_cast<double>(r.step_ns) * 1e-6) + " ms";
    const double label_w = 7.0 * static_cast<double>(end_label.size());
    const bool room_right = step_x + 8 + label_w < kWidth;
    // On the title line unless the title and its stats reach it; then under the rows when
    // another panel follows (the gap between panels is free).
    const double label_left = room_right ? step_x + 5 : step_x - 5 - label_w;
    const double title_end = kLeft + 8.5 * static_cast<double>(titles[pi].size()) + 12 +
                             6.6 * static_cast<double>(stats_of[pi].size());
    const bool below = label_left < title_end && pi + 1 < panels.size();
    o += "<text x=\"" + num(room_right ? step_x + 5 : step_x - 5) + "\" y=\"" + num(below ? rows_bottom + 15 : rows_top - 8) +
         "\" font-size=\"11\" font-weight=\"bold\" fill=\"#c0262d\" text-anchor=\"" + (room_right ? "start" : "end") + "\">" +
         end_label + "</text>\n";
    o += "</g>\n";
  }

  // Time axis.
  o += "<g class=\"axis\">\n";
  o += "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(axis_y) + "\" x2=\"" + num(kLeft + kPlotWidth) + "\" y2=\"" + num(axis_y) +
       "\" stroke=\"#333\" stroke-width=\"1\"/>\n";
  for (int t = 0; t <= n_ticks; ++t) {
    const double x = kLeft + (t * tick_ms * 1e6) * scale;
    o += "<line x1=\"" + num(x) + "\" y1=\"" + num(axis_y) + "\" x2=\"" + num(x) + "\" y2=\"" + num(axis_y + 5) +
         "\" stroke=\"#333\" stroke-width=\"1\"/>\n";
    o += "<text x=\"" + num(x) + "\" y=\"" + num(axis_y + 18) + "\" font-size=\"11\" text-anchor=\"middle\" fill=\"#333\">" +
         ms_label(t * tick_ms, tick_digits) + "</text>\n";
  }
  o += "<text x=\"" + num(kLeft + kPlotWidth) + "\" y=\"" + num(axis_y + 34) +
       "\" font-size=\"11\" text-anchor=\"end\" fill=\"#333\">time (ms)</text>\n";
  o += "</g>\n";

  // Legend: modules x passes.
  o += "<g class=\"legend\">\n";
  o += "<text x=\"" + num(kLeft) + "\" y=\"" + num(legend_top + 2) +
       "\" font-size=\"11\" fill=\"#555\">F forward · B backward · I input-gradient backward · W weight-gradient backward "
       "(hatched)</text>\n";
  for (std::size_t k = 0; k < modules.size(); ++k) {
    const ModuleColours& c = colours[modules[k]];
    double lx = legend_pos[k].first;
    const double ly = legend_pos[k].second;
    o += "<text x=\"" + num(lx) + "\" y=\"" + num(ly + 11) + "\" font-size=\"12\" fill=\"#111\">" + escape(modules[k]) + "</text>\n";
    lx += 12 + 7.0 * static_cast<double>(modules[k].size());
    for (const Op op : {Op::F, Op::B, Op::I, Op::W}) {
      if (!op_seen[static_cast<std::size_t>(op)]) continue;
      const std::string fill = op == Op::F ? c.f : op == Op::B ? c.b : op == Op::I ? c.i : "url(#" + c.w_pattern_id + ")";
      o += "<rect x=\"" + num(lx) + "\" y=\"" + num(ly) + "\" width=\"18\" height=\"14\" fill=\"" + fill + "\"/>\n";
      o += "<text x=\"" + num(lx + 22) + "\" y=\"" + num(ly + 11) + "\" font-size=\"11\" fill=\"#333\">" +
           std::string(1, schedule::op_char(op)) + "</text>\n";
      lx += 36;
    }
  }
  o += "</g>\n";
  o += "</svg>\n";
  return o;
}

}  // namespace pipeweaver::exporting
