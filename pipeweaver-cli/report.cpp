#include "report.hpp"

#include <filesystem>
#include <iomanip>
#include <sstream>

#include "common/file_io.hpp"
#include "export/chrome_trace.hpp"
#include "export/svg_timeline.hpp"

namespace pipeweaver::cli {

namespace {

// The first `n` characters of a one-line description, cut at a comma.
std::string brief(const std::string& s, std::size_t n) {
  if (s.size() <= n) return s;
  const std::size_t cut = s.rfind(", ", n);
  return s.substr(0, cut == std::string::npos ? n : cut) + ", ...";
}

std::string ms_text(std::int64_t ns) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(1) << static_cast<double>(ns) * 1e-6 << " ms";
  return s.str();
}

}  // namespace

std::vector<std::string> write_batch_report(const std::string& dir, const SimInputs& in, search::Searcher& searcher,
                                            const spec::Batch& batch, const search::BatchResult& r) {
  std::vector<std::string> files;
  const std::string stem = (std::filesystem::path(dir) / ("batch-" + std::to_string(batch.index))).string();
  const search::Evaluated& base = r.baselines[r.best_baseline];
  struct Shown {
    const search::Evaluated* e;
    std::string name;
    semu::Result timeline;
  };
  std::vector<Shown> shown = {{&r.best, "pipeweaver", {}}, {&base, base.method, {}}};
  for (Shown& s : shown) {
    s.timeline = searcher.replay(*s.e, batch);
    exporting::ChromeTraceInfo info;
    info.title = in.model.name + " on " + in.cluster.name + ", " + s.name + ", batch " + std::to_string(batch.index);
    info.other = {{"model", in.model.name}, {"cluster", in.cluster.name}, {"method", s.name}, {"how", s.e->detail},
                  {"batch", batch.index}};
    const std::string path = stem + "-" + s.name + ".trace.json";
    exporting::write_chrome_trace(path, exporting::chrome_trace(s.e->schedule, searcher.costs_of(*s.e, batch), s.timeline, info));
    files.push_back(path);
  }
  const std::vector<exporting::TimelinePanel> panels = {
      {"PipeWeaver" + (r.best.switch_ns > 0 ? " (+ " + ms_text(r.best.switch_ns) + " moving layers)" : std::string()) +
           ": " + brief(r.best.detail, 70),
       &r.best.schedule, &shown[0].timeline},
      {"best baseline: " + brief(base.detail, 70), &base.schedule,
       &shown[1].timeline}};
  const double speedup = static_cast<double>(base.result.step_ns) / static_cast<double>(r.best.score_ns());
  std::ostringstream heading;
  heading << in.model.name << " on " << in.cluster.name << ", batch " << batch.index << " (" << batch.samples.size()
          << " samples): PipeWeaver " << std::fixed << std::setprecision(2) << speedup << "x faster than " << base.method;
  const std::string svg = stem + ".svg";
  common::write_file_atomic(svg, exporting::timeline_svg(panels, heading.str(), exporting::TimelineStyle::of(in.model)));
  files.insert(files.begin(), svg);
  return files;
}

}  // namespace pipeweaver::cli
