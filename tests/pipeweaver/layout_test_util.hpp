// A layer partition for tests that need one without a cluster or a cost model: chunks per
// module in proportion to its forward FLOPs, layers split evenly inside a module. (The
// tools partition by the cost model's times: search/partition.hpp.)
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/errors.hpp"
#include "schedule/schedule.hpp"
#include "spec/model.hpp"
#include "spec/sample.hpp"

namespace pwtest {

/// Layers cut into `n_chunks` chunks in pipeline order - each encoder (projectors folded),
/// then the LLM - chunks per module in proportion to its forward FLOPs over `batches`
/// (at least one each), layers split evenly inside a module. UsageError when n_chunks is
/// below the number of modules with layers or above the total layer count.
inline std::vector<pipeweaver::schedule::Chunk> balanced_chunks(const pipeweaver::spec::ModelSpec& model,
                                                               std::span<const pipeweaver::spec::Batch> batches,
                                                               std::int32_t n_chunks) {
  std::vector<int> order;  // encoders in model order, then the LLM
  for (std::size_t m = 0; m < model.modules.size(); ++m)
    if (model.modules[m].kind == pipeweaver::spec::ModuleKind::encoder) order.push_back(static_cast<int>(m));
  order.push_back(model.llm_index);
  std::int64_t total_layers = 0;
  for (const int m : order) total_layers += model.modules[static_cast<std::size_t>(m)].layers;
  if (n_chunks < static_cast<std::int32_t>(order.size()) || n_chunks > total_layers)
    throw common::UsageError("cannot cut " + model.name + " into " + std::to_string(n_chunks) + " chunks",
                             "a chunk is a layer range of one module: between " + std::to_string(order.size()) +
                                 " (one per encoder and the LLM) and " + std::to_string(total_layers) +
                                 " chunks (ranks x chunks per rank)");
  // Forward FLOPs per module over the batches (projectors fold into their encoder).
  std::vector<double> weight(model.modules.size(), 0.0);
  for (const pipeweaver::spec::Batch& b : batches)
    for (const pipeweaver::spec::Sample& smp : b.samples) {
      const pipeweaver::spec::SampleShape shape = model.shape(smp);
      weight[static_cast<std::size_t>(model.llm_index)] += model.llm().forward_flops(shape.llm_tokens);
      for (const auto& p : shape.encoder_passes)
        weight[static_cast<std::size_t>(p.module)] +=
            static_cast<double>(p.count) * model.modules[static_cast<std::size_t>(p.module)].forward_flops(p.seq_len);
    }
  bool any = false;
  for (const int m : order) any = any || weight[static_cast<std::size_t>(m)] > 0;
  if (!any)
    for (const int m : order) weight[static_cast<std::size_t>(m)] = static_cast<double>(model.modules[static_cast<std::size_t>(m)].params());
  // One chunk each, then each further chunk to the module with the heaviest chunks.
  std::vector<std::int32_t> count(order.size(), 1);
  for (std::int32_t extra = n_chunks - static_cast<std::int32_t>(order.size()); extra > 0; --extra) {
    std::size_t best = order.size();
    double best_load = -1;
    for (std::size_t j = 0; j < order.size(); ++j) {
      const pipeweaver::spec::Module& m = model.modules[static_cast<std::size_t>(order[j])];
      if (count[j] >= m.layers) continue;
      const double load = weight[static_cast<std::size_t>(order[j])] / count[j];
      if (load > best_load) {
        best_load = load;
        best = j;
      }
    }
    PWPI_CHECK(best < order.size());
    ++count[best];
  }
  std::vector<pipeweaver::schedule::Chunk> out;
  for (std::size_t j = 0; j < order.size(); ++j) {
    const pipeweaver::spec::Module& m = model.modules[static_cast<std::size_t>(order[j])];
    const std::int32_t layers = static_cast<std::int32_t>(m.layers), c = count[j];
    std::int32_t begin = 0;
    for (std::int32_t k = 0; k < c; ++k) {
      const std::int32_t n = layers / c + (k < layers % c ? 1 : 0);
      out.push_back({m.name, begin, begin + n, 0});
      begin += n;
    }
  }
  return out;
}

}  // namespace pwtest
