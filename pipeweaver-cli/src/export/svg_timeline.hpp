// A pipeline timeline as one self-contained SVG document (no scripts, fonts or links), for
// people: one panel per emulated step, stacked on one shared time axis so a faster schedule
// is visibly shorter; one row per rank; every compute pass a rectangle coloured by module
// (vision blue, audio green, projector purple, LLM orange, others from a fixed palette by
// name hash) and shaded by pass (F full colour, B darker, I darkest, W light and hatched),
// labelled "F3" (microbatch 3) where wide enough, with hover text in a <title>; idle time is
// the light row background left uncovered, and a dashed marker gives each step's end.
#pragma once

#include <map>
#include <span>
#include <string>

#include "schedule/schedule.hpp"
#include "semu/semu.hpp"
#include "spec/model.hpp"

namespace pipeweaver::exporting {

struct TimelinePanel {
  std::string title;                   // e.g. "1f1b (1 chunk per rank)"
  const schedule::Schedule* schedule;  // the schedule played
  const semu::Result* result;          // simulated with Options::record_timeline
};

struct TimelineStyle {
  /// Module name -> colour family: "vision", "audio", "projector" or "llm". Modules not
  /// listed are guessed from their names ("vis", "vit", "audio", "whisper", "proj", "llm", ...)
  /// and otherwise take a palette colour by hash of the name.
  std::map<std::string, std::string> module_family;

  /// Every module of `model` by its kind: encoders by their input (mel: "audio", else
  /// "vision"), projectors, the LLM.
  static TimelineStyle of(const spec::ModelSpec& model);
};

/// The SVG document: a heading line, then the panels (title, step time and bubble ratio,
/// rows "rank r"), a time axis in ms with 1-2-5 tick spacing and grid lines through the
/// panels, and a legend of modules x passes present. Titles and names are XML-escaped.
std::string timeline_svg(std::span<const TimelinePanel> panels, const std::string& heading,
                         const TimelineStyle& style = {});

}  // namespace pipeweaver::exporting
