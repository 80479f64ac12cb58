// The search's visual report for one batch: an SVG timeline of PipeWeaver's schedule
// stacked above the best baseline's (one shared time axis), and both Chrome traces.
#pragma once

#include <string>
#include <vector>

#include "search/search.hpp"
#include "sim_setup.hpp"

namespace pipeweaver::cli {

/// Writes batch-<i>.svg, batch-<i>-pipeweaver.trace.json and batch-<i>-<baseline>.trace.json
/// into `dir`; returns their paths.
std::vector<std::string> write_batch_report(const std::string& dir, const SimInputs& in, search::Searcher& searcher,
                                            const spec::Batch& batch, const search::BatchResult& r);

}  // namespace pipeweaver::cli
