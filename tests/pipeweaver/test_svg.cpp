// The SVG timeline: well-formed XML (a small checker here, and python3's parser in a test of
// its own that skips, saying so, without python3), one rectangle per compute pass, widths
// and positions proportional to the emulated times, both panels on one time axis, escaped
// titles, finite coordinates.
#include <cmath>
#include <cstdlib>
#include <map>

#include "common/file_io.hpp"
#include "export/svg_timeline.hpp"
#include "schedule/generators.hpp"
#include "test_support.hpp"

using namespace pipeweaver;

namespace {

struct Element {
  std::string name;
  std::map<std::string, std::string> attrs;
};

bool entity_ok(const std::string& s, std::size_t amp) {
  for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
    if (s.compare(amp, std::char_traits<char>::length(e), e) == 0) return true;
  return false;
}

// A strict little XML reader for what timeline_svg writes: declaration, elements with
// double-quoted attributes, text without markup, entities from the predefined five.
// Returns "" or the first problem; `out` gets the elements in document order.
std::string check_xml(const std::string& doc, std::vector<Element>& out) {
  std::vector<std::string> stack;
  std::size_t i = 0, roots = 0;
  if (doc.rfind("<?xml", 0) == 0) i = doc.find("?>") + 2;
  while (i < doc.size()) {
    if (doc[i] != '<') {
      if (stack.empty() && !std::isspace(static_cast<unsigned char>(doc[i]))) return "text outside the root";
      if (doc[i] == '&' && !entity_ok(doc, i)) return "bad entity at " + std::to_string(i);
      if (doc[i] == '>') return "stray '>' at " + std::to_string(i);
      ++i;
      continue;
    }
    if (doc.compare(i, 2, "</") == 0) {
      const auto end = doc.find('>', i);
      if (end == std::string::npos) return "unclosed end tag";
      const std::string name = doc.substr(i + 2, end - i - 2);
      if (stack.empty() || stack.back() != name) return "mismatched </" + name + "> at " + std::to_string(i);
      stack.pop_back();
      i = end + 1;
      continue;
    }
    std::size_t j = i + 1;
    while (j < doc.size() && (std::isalnum(static_cast<unsigned char>(doc[j])) || doc[j] == '-' || doc[j] == ':')) ++j;
    Element e{doc.substr(i + 1, j - i - 1), {}};
    if (e.name.empty()) return "empty tag name at " + std::to_string(i);
    for (;;) {
      while (j < doc.size() && std::isspace(static_cast<unsigned char>(doc[j]))) ++j;
      if (j >= doc.size()) return "unterminated tag " + e.name;
      if (doc[j] == '>' || doc.compare(j, 2, "/>") == 0) break;
      const auto eq = doc.find('=', j);
      if (eq == std::string::npos || doc[eq + 1] != '"') return "unquoted attribute in " + e.name;
      const std::string key = doc.substr(j, eq - j);
      const auto close = doc.find('"', eq + 2);
      if (close == std::string::npos) return "unterminated attribute in " + e.name;
      const std::string value = doc.substr(eq + 2, close - eq - 2);
      if (value.find('<') != std::string::npos) return "'<' in an attribute of " + e.name;
      for (std::size_t a = value.find('&'); a != std::string::npos; a = value.find('&', a + 1))
        if (!entity_ok(value, a)) return "bad entity in an attribute of " + e.name;
      if (!e.attrs.emplace(key, value).second) return "duplicate attribute " + key + " in " + e.name;
      j = close + 1;
    }
    const bool empty = doc[j] == '/';
    if (stack.empty() && ++roots > 1) return "two root elements";
    if (!empty) stack.push_back(e.name);
    out.push_back(std::move(e));
    i = j + (empty ? 2 : 1);
  }
  return stack.empty() ? (roots == 1 ? "" : "no root element") : "unclosed <" + stack.back() + ">";
}

bool numeric_attrs_finite(const std::vector<Element>& elements, std::string& bad) {
  for (const Element& e : elements)
    for (const char* k : {"x", "y", "width", "height", "x1", "x2", "y1", "y2", "font-size"}) {
      const auto it = e.attrs.find(k);
      if (it == e.attrs.end() || it->second.find('%') != std::string::npos) continue;
      char* end = nullptr;
      const double v = std::strtod(it->second.c_str(), &end);
      if (end == it->second.c_str() || *end != '\0' || !std::isfinite(v)) {
        bad = e.name + " " + k + "=\"" + it->second + "\"";
        return false;
      }
    }
  return true;
}

double attr(const Element& e, const char* key) { return std::strtod(e.attrs.at(key).c_str(), nullptr); }

// Per-pass costs that vary by stage and microbatch, so proportionality means something.
cost::StepCosts varied(const schedule::Schedule& s) {
  auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  for (std::int32_t st = 0; st < s.n_stages(); ++st)
    for (std::int32_t mb = 0; mb < s.n_microbatches; ++mb) {
      const auto x = c.at(st, mb);
      c.f_ns[x] = 1'000'000 + 137'000 * ((st * 7 + mb * 3) % 5);
      c.i_ns[x] = c.f_ns[x] + 90'000 * (mb % 3);
      c.w_ns[x] = c.f_ns[x] / 2;
      c.b_ns[x] = c.i_ns[x] + c.w_ns[x];
      c.send_f_ns[x] = c.send_b_ns[x] = 20'000;
    }
  return c;
}

// Two panels (1F1B above ZB-H1) of 4 ranks and 8 microbatches, two modules, escaped titles.
struct TwoPanels {
  schedule::Schedule s1, s2;
  semu::Result r1, r2;
  std::string doc;
};

TwoPanels two_panels() {
  const std::int32_t p = 4, m = 8;
  auto chunks = schedule::uniform_chunks("llm", p, 2);
  chunks[0].module = "vision";  // two modules: two colours
  TwoPanels t;
  t.s1 = schedule::one_f_one_b(p, m, chunks);
  t.s2 = schedule::zb_h1(p, m, chunks);
  t.r1 = semu::simulate(t.s1, varied(t.s1), {.record_timeline = true});
  t.r2 = semu::simulate(t.s2, varied(t.s2), {.record_timeline = true});
  const exporting::TimelinePanel panels[] = {{"1F1B <baseline> & co", &t.s1, &t.r1},
                                             {"ZB-H1 \"zero bubble\"", &t.s2, &t.r2}};
  t.doc = exporting::timeline_svg(panels, "4 ranks, 8 microbatches <test>");
  return t;
}

}  // namespace

TEST_CASE("pipeweaver SVG timeline: well-formed, one rect per pass, proportional, one time axis", "[unit]") {
  const TwoPanels t = two_panels();
  const auto &s1 = t.s1, &s2 = t.s2;
  const auto &r1 = t.r1, &r2 = t.r2;
  const std::string& doc = t.doc;
  REQUIRE(r2.step_ns < r1.step_ns);

  std::vector<Element> elements;
  const std::string problem = check_xml(doc, elements);
  INFO(problem);
  REQUIRE(problem.empty());
  REQUIRE(elements.front().name == "svg");
  std::string bad;
  CHECK(numeric_attrs_finite(elements, bad));
  INFO(bad);
  CHECK(doc.find("nan") == std::string::npos);

  // Escaped titles and heading, both panels.
  CHECK(doc.find("1F1B &lt;baseline&gt; &amp; co") != std::string::npos);
  CHECK(doc.find("ZB-H1 &quot;zero bubble&quot;") != std::string::npos);
  CHECK(doc.find("4 ranks, 8 microbatches &lt;test&gt;") != std::string::npos);
  for (const std::string label : {"rank 0", "rank 3"}) CHECK(doc.find(">" + label + "<") != std::string::npos);
  // Self-contained: nothing fetched, nothing run.
  CHECK(doc.find("<script") == std::string::npos);
  CHECK(doc.find("href") == std::string::npos);
  CHECK(doc.find("@import") == std::string::npos);

  // One rect per compute event, in timeline order, each with a <title>.
  std::vector<const Element*> rects;
  std::size_t titles = 0;
  std::vector<double> end_x;
  for (const Element& e : elements) {
    if (e.name == "rect" && e.attrs.count("class") && e.attrs.at("class") == "ev") rects.push_back(&e);
    if (e.name == "title") ++titles;
    if (e.name == "line" && e.attrs.count("class") && e.attrs.at("class") == "end") end_x.push_back(attr(e, "x1"));
  }
  std::vector<const semu::TimelineEvent*> events;
  for (const auto* r : {&r1, &r2})
    for (const auto& e : r->timeline)
      if (e.kind == semu::TimelineEvent::Kind::compute) events.push_back(&e);
  REQUIRE(rects.size() == events.size());
  CHECK(rects.size() == s1.n_actions() + s2.n_actions());
  CHECK(titles == rects.size());
  // Widths proportional to durations and x offsets to start times, with one scale for both
  // panels (coordinates are printed to 0.01 px): the scale from the first panel's end marker.
  REQUIRE(end_x.size() == 2);
  REQUIRE(events[0]->start_ns == 0);
  const double x0 = attr(*rects[0], "x");
  const double scale = (end_x[0] - x0) / static_cast<double>(r1.step_ns);
  REQUIRE(scale > 0);
  double worst_w = 0, worst_x = 0;
  for (std::size_t i = 0; i < rects.size(); ++i) {
    worst_w = std::max(worst_w, std::abs(attr(*rects[i], "width") -
                                         scale * static_cast<double>(events[i]->end_ns - events[i]->start_ns)));
    worst_x = std::max(worst_x, std::abs(attr(*rects[i], "x") - x0 - scale * static_cast<double>(events[i]->start_ns)));
  }
  INFO("worst width error " << worst_w << " px, worst x error " << worst_x << " px");
  CHECK(worst_w < 0.05);
  CHECK(worst_x < 0.05);
  // End markers at the step times: the faster schedule's is further left, by the difference.
  CHECK(end_x[1] < end_x[0]);
  CHECK(std::abs((end_x[0] - end_x[1]) - scale * static_cast<double>(r1.step_ns - r2.step_ns)) < 0.05);
  // Colours: vision and llm differ; W passes hatched (a pattern fill).
  std::map<std::string, std::string> f_fill;
  bool w_pattern = true;
  for (std::size_t i = 0; i < rects.size(); ++i) {
    const auto& a = events[i]->action;
    const auto& module = (i < s1.n_actions() ? s1 : s2).chunks[static_cast<std::size_t>(a.stage)].module;
    if (a.op == schedule::Op::F) f_fill[module] = rects[i]->attrs.at("fill");
    if (a.op == schedule::Op::W) w_pattern = w_pattern && rects[i]->attrs.at("fill").rfind("url(#", 0) == 0;
  }
  CHECK(w_pattern);
  REQUIRE(f_fill.size() == 2);
  CHECK(f_fill["vision"] != f_fill["llm"]);
}

TEST_CASE("pipeweaver SVG timeline: python3's XML parser reads it and finds every pass", "[unit]") {
  // An outside parser against the checker above; without python3 this says so and skips.
  if (std::system("command -v python3 > /dev/null 2>&1") != 0)
    PWPI_SKIP("python3 is not on PATH: the SVG is not checked by an outside XML parser");
  const TwoPanels t = two_panels();
  testing::TempDir dir;
  common::write_file_atomic((dir / "t.svg").string(), t.doc);
  const auto r = testing::run_command(
      "python3 -c \"import sys, xml.etree.ElementTree as E; root = E.parse(sys.argv[1]).getroot(); "
      "print(len(root.findall('.//{http://www.w3.org/2000/svg}rect[@class=\\\"ev\\\"]')))\" " +
      testing::shell_quote((dir / "t.svg").string()));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(std::atoi(r.out.c_str()) == static_cast<int>(t.s1.n_actions() + t.s2.n_actions()));
}

TEST_CASE("pipeweaver SVG timeline of an all-zero-cost step has finite coordinates", "[unit]") {
  const auto s = schedule::gpipe(2, 2, schedule::uniform_chunks("audio", 2, 1));
  const auto c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  const auto r = semu::simulate(s, c, {.record_timeline = true});
  REQUIRE(r.step_ns == 0);
  const exporting::TimelinePanel panel[] = {{"empty", &s, &r}};
  const std::string doc = exporting::timeline_svg(panel, "zero");
  std::vector<Element> elements;
  REQUIRE(check_xml(doc, elements).empty());
  std::string bad;
  CHECK(numeric_attrs_finite(elements, bad));
  INFO(bad);
  std::size_t rects = 0;
  for (const Element& e : elements) rects += e.name == "rect" && e.attrs.count("class") && e.attrs.at("class") == "ev";
  CHECK(rects == s.n_actions());
}

TEST_CASE("pipeweaver SVG timeline: a long panel title is cut at a comma so that its stats fit", "[unit]") {
  const auto s = schedule::gpipe(2, 2, schedule::uniform_chunks("llm", 2, 1));
  cost::StepCosts c = cost::StepCosts::zeros(s.n_stages(), s.n_microbatches, s.n_ranks);
  std::fill(c.f_ns.begin(), c.f_ns.end(), 1000);
  std::fill(c.b_ns.begin(), c.b_ns.end(), 2000);
  const auto r = semu::simulate(s, c, {.record_timeline = true});
  std::string title = "PipeWeaver (+ 0.6 ms moving layers): previous batch's layout (30 chunks)";
  for (int i = 0; i < 12; ++i) title += ", detail number " + std::to_string(i);
  const exporting::TimelinePanel panel[] = {{title, &s, &r}};
  const std::string doc = exporting::timeline_svg(panel, "long title");
  CHECK(doc.find("detail number 11") == std::string::npos);
  const auto cut = doc.find(", ...</tspan>");  // the title ends at a comma
  REQUIRE(cut != std::string::npos);
  CHECK(doc.rfind("PipeWeaver (+ 0.6 ms moving layers)", cut) != std::string::npos);
  REQUIRE(r.step_ns == 9000);  // (m + p - 1)(tf + tb)
  CHECK(doc.find("step 0.009 ms") != std::string::npos);  // 3 decimals below 100 ms
}
