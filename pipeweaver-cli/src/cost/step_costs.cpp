#include "cost/step_costs.hpp"

namespace pipeweaver::cost {

StepCosts StepCosts::zeros(std::int32_t n_stages, std::int32_t n_microbatches, std::int32_t n_ranks) {
  StepCosts c;
  c.n_stages = n_stages;
  c.n_microbatches = n_microbatches;
  const std::size_t n = static_cast<std::size_t>(n_stages) * static_cast<std::size_t>(n_microbatches);
  for (auto* v : {&c.f_ns, &c.b_ns, &c.i_ns, &c.w_ns, &c.send_f_ns, &c.send_b_ns, &c.act_bytes, &c.act_w_bytes})
    v->assign(n, 0);
  c.static_bytes.assign(static_cast<std::size_t>(n_ranks), 0);
  c.capacity_bytes.assign(static_cast<std::size_t>(n_ranks), 0);
  return c;
}

}  // namespace pipeweaver::cost
