// The cost model against hand computations, reuse against no reuse (bit for bit), packing,
// chunk checks, device profiles and the Chrome trace export.
#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "cost/calibrate.hpp"
#include "cost/cost_model.hpp"
#include "cost/device_profile.hpp"
#include "export/chrome_trace.hpp"
#include "profile_test_util.hpp"
#include "schedule/generators.hpp"
#include "search/packing.hpp"
#include "semu/reference.hpp"
#include "semu/result_cache.hpp"
#include "spec/mix.hpp"
#include "spec/trace_gen.hpp"
#include "layout_test_util.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver;
using pwtest::config;

namespace {

// 1 TFLOP/s at 50% for GEMMs and attention, 1 TB/s: every number below is by hand.
cost::Device toy_device() {
  cost::Device d;
  d.peak_flops = 1e12;
  d.hbm_bytes_per_s = 1e12;
  d.gemm_efficiency = 0.5;
  d.attention_efficiency = 0.5;
  return d;
}

spec::Module toy_encoder_module() {
  spec::Module m;
  m.name = "toy";
  m.kind = spec::ModuleKind::encoder;
  m.layers = 4;
  m.layer.hidden = 64;
  m.layer.ffn = 256;
  m.layer.gated = false;
  m.layer.heads = 4;
  m.layer.kv_heads = 4;
  m.layer.head_dim = 16;
  m.layer.causal = false;
  return m;
}

std::vector<spec::Batch> make_trace(const std::string& mix_file, const spec::ModelSpec& model, int batches,
                                    std::uint64_t seed) {
  const spec::MixSpec mix = spec::load_mix(mix_file);
  const spec::TokenRules rules(mix, &model);
  spec::GenOptions o;
  o.batches = batches;
  o.seed = seed;
  return spec::generate_trace(mix, rules, o, mix_file).batches;
}

schedule::Schedule with_packing(schedule::Schedule s, const spec::ModelSpec& model, const spec::Batch& b) {
  s.microbatch_samples = search::pack_contiguous(model, b, s.n_microbatches);
  return s;
}

}  // namespace

TEST_CASE("pipeweaver cost: a transformer layer's F, I, W by hand", "[unit]") {
  const cost::Device d = toy_device();
  const spec::Module m = toy_encoder_module();
  cost::ModuleLoad load;
  load.seqs = {{100, 1}};
  load.tokens = 100;
  const cost::PassCost c = cost::layer_cost(d, m, load, 2, cost::CostOptions{});
  // GEMM FLOPs 2*100*(64*192 + 64*64 + 64*256 + 256*64) = 9,830,400 at 0.5 TFLOP/s = 19,660.8 ns
  // (each compute-bound); attention 4*64*100^2 = 2,560,000 FLOPs = 5,120 ns; elementwise
  // 2*100*(10*64 + 2*256) = 230,400 bytes = 230.4 ns.
  CHECK(c.f_ns == 25011);  // 19,660.8 + 5,120 + 230.4
  CHECK(c.i_ns == 32922);  // 19,660.8 + 2.5 * 5,120 + 2 * 230.4
  CHECK(c.w_ns == 19661);
  // Saved bytes per token (bf16, FlashAttention, no dropout): norms 2*2*64 + attention
  // 2*(64+64+2*64+64) + MLP 2*64 + 2*2*256 + log-sum-exp 4*4 = 2,064.
  CHECK(c.act_bytes == 206400);
  CHECK(c.act_w_bytes == 2 * (2 * 64 + 64 + 256) * 100);
}

TEST_CASE("pipeweaver cost: a chunk costs its layers, each the same wherever it sits, plus its ends' extras",
          "[unit]") {
  // What reuse relies on: step_costs gives an LLM chunk of n layers exactly n x one layer on
  // the microbatch's load, plus the embedding when it holds layer 0 and the head when it
  // holds the last layer, whatever layers [begin, end) it holds; with or without reuse, with
  // the chunk's own recomputation flag too.
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  const spec::ClusterSpec cluster = spec::load_cluster(config("clusters/h100-80g-8x.json"));
  spec::Batch b;
  for (const auto& [text, images] :
       std::vector<std::pair<int, int>>{{300, 1}, {1000, 0}, {50, 2}, {700, 0}, {20, 1}}) {
    spec::Sample x;
    x.text_tokens = text;
    for (int i = 0; i < images; ++i) x.images.push_back({576, 1});
    b.samples.push_back(x);
  }
  std::vector<schedule::Chunk> chunks = {{"vision", 0, 24, 0}, {"llm", 0, 4, 1},   {"llm", 4, 8, 2},
                                         {"llm", 8, 16, 3},    {"llm", 16, 24, 4}, {"llm", 24, 32, 5}};
  schedule::Schedule s = schedule::gpipe(6, 3, chunks);
  s.chunks[4].recompute = true;
  s.microbatch_samples = {{0, 1}, {2}, {3, 4}};
  const auto infos = cost::resolve_chunks(model, s, common::Where("t"), "");
  const cost::Device d = cost::Device::from(cluster.device);
  const spec::Module& llm = model.llm();
  cost::CostOptions recomputing;
  recomputing.recompute = true;
  for (const bool reuse : {true, false}) {
    cost::CostModel cm(model, cluster);
    cm.set_reuse(reuse);
    const cost::StepCosts c = cm.step_costs(s, infos, b);
    for (std::int32_t mb = 0; mb < 3; ++mb) {
      const auto loads = cost::microbatch_loads(model, b, s.microbatch_samples[static_cast<std::size_t>(mb)]);
      const cost::ModuleLoad& load = loads[static_cast<std::size_t>(model.llm_index)];
      const cost::PassCost layer = cost::layer_cost(d, llm, load, model.dtype_bytes, {});
      REQUIRE(layer.f_ns > 0);
      for (std::int32_t st = 1; st < 6; ++st) {
        const schedule::Chunk& ch = s.chunks[static_cast<std::size_t>(st)];
        INFO("reuse " << reuse << ", microbatch " << mb << ", llm layers [" << ch.layer_begin << ", "
                      << ch.layer_end << ")");
        cost::PassCost want =
            (ch.recompute ? cost::layer_cost(d, llm, load, model.dtype_bytes, recomputing) : layer)
                .scaled(ch.layer_end - ch.layer_begin);
        want += cost::extras_cost(d, llm, load, model.dtype_bytes, ch.layer_begin == 0,
                                  ch.layer_end == llm.layers);
        const std::size_t x = c.at(st, mb);
        CHECK(c.f_ns[x] == want.f_ns);
        CHECK(c.i_ns[x] == want.i_ns);
        CHECK(c.w_ns[x] == want.w_ns);
        CHECK(c.b_ns[x] == want.i_ns + want.w_ns);
        CHECK(c.act_bytes[x] == want.act_bytes);
        CHECK(c.act_w_bytes[x] == want.act_w_bytes);
      }
      // Position does not matter: layers [4, 8) cost what [0, 4) cost less the embedding,
      // and [8, 16) twice [4, 8).
      const cost::PassCost embed = cost::extras_cost(d, llm, load, model.dtype_bytes, true, false);
      CHECK(c.f_ns[c.at(2, mb)] == c.f_ns[c.at(1, mb)] - embed.f_ns);
      CHECK(c.f_ns[c.at(3, mb)] == 2 * c.f_ns[c.at(2, mb)]);
      CHECK(c.w_ns[c.at(3, mb)] == 2 * c.w_ns[c.at(2, mb)]);
      CHECK(c.act_bytes[c.at(3, mb)] == 2 * c.act_bytes[c.at(2, mb)]);
    }
  }
}

TEST_CASE("pipeweaver cost: activation memory matches Korthikanti et al.'s 34sh + 5as^2", "[unit]") {
  // A GPT layer (4h MLP, no GQA, dropout) without FlashAttention: 34 h bytes per token plus
  // 5 a s^2 per sequence (Korthikanti et al. 2022, "Reducing Activation Recomputation", eq. 1).
  spec::LayerShape l = toy_encoder_module().layer;
  cost::CostOptions o;
  o.flash_attention = false;
  o.dropout = true;
  CHECK(cost::layer_act_bytes_per_token(l, 2, o) == 34 * 64);
  CHECK(cost::score_act_bytes(l, 100, o) == 5 * 4 * 100 * 100);
  // FlashAttention keeps no scores, only a fp32 log-sum-exp per head and token.
  o.flash_attention = true;
  CHECK(cost::score_act_bytes(l, 100, o) == 0);
  CHECK(cost::layer_act_bytes_per_token(l, 2, o) == 34 * 64 + 16);
}

TEST_CASE("pipeweaver cost: quadratic attention is per packed sequence", "[unit]") {
  const cost::Device d = toy_device();
  const spec::Module m = toy_encoder_module();
  cost::ModuleLoad one, four;
  one.seqs = {{400, 1}};
  one.tokens = 400;
  four.seqs = {{100, 4}};
  four.tokens = 400;
  const auto a = cost::layer_cost(d, m, one, 2, {}), b = cost::layer_cost(d, m, four, 2, {});
  // Same GEMMs; attention 4*64*400^2 = 40,960,000 FLOPs vs 4 * 2,560,000 = 10,240,000:
  // 81,920 ns vs 20,480 ns forward.
  CHECK(a.f_ns - b.f_ns == 81920 - 20480);
  CHECK(a.w_ns == b.w_ns);
}

TEST_CASE("pipeweaver cost: P2P time is latency plus bytes over bandwidth", "[unit]") {
  spec::LinkSpec ib{50e9, 6000};
  // 4096 tokens x 4096 hidden x 2 bytes = 33,554,432 bytes: 671,088.64 ns + 6 us.
  CHECK(cost::p2p_ns(ib, 4096LL * 4096 * 2) == 677089);
  CHECK(cost::p2p_ns(ib, 0) == 6000);
}

TEST_CASE("pipeweaver cost: static memory per rank of the shipped 7B config", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  const spec::ClusterSpec cluster = spec::load_cluster(config("clusters/h100-80g-8x.json"));
  schedule::Schedule s;
  s.n_ranks = 4;
  s.n_microbatches = 4;
  s.chunks = {{"vision", 0, 24, 0}, {"llm", 0, 10, 1}, {"llm", 10, 21, 2}, {"llm", 21, 32, 3}};
  const auto chunks = cost::resolve_chunks(model, s, common::Where("s.json"), "llava-7b.json");
  // Vicuna layer: 4*4096^2 + 3*4096*11008 + 2*4096 = 202,383,360. Embedding and LM head
  // 32000*4096 = 131,072,000 each; final RMSNorm 4096.
  CHECK(chunks[1].params == 10LL * 202383360 + 131072000);
  CHECK(chunks[2].params == 11LL * 202383360);
  CHECK(chunks[3].params == 11LL * 202383360 + 131072000 + 4096);
  // CLIP ViT-L/14-336: 24 layers of 12,596,224 + patch 602,112 + positions 577*1024 + class
  // 1024 + two LayerNorms 2*2048; the 2-layer projector (20,979,712) is folded in.
  CHECK(chunks[0].params == 24LL * 12596224 + 602112 + 590848 + 1024 + 4096 + 20979712);
  CHECK(chunks[0].folded_projectors == std::vector<int>{1});
  std::int64_t total = 0;
  for (const auto& c : chunks) total += c.params;
  CHECK(total == 7062902784);  // the model's parameter count (the LM head is untied)
  // Mixed-precision Adam: 2 (bf16 weights) + 4 (fp32 gradients) + 12 (fp32 master, m, v).
  CHECK(cost::static_bytes(chunks[2].params, 2, 1, {}) == 18LL * 11 * 202383360);
  cost::CostOptions zero;
  zero.zero1 = true;
  CHECK(cost::static_bytes(1000, 2, 4, zero) == 6000 + 3000);

  const spec::Batch batch{0, {spec::Sample{100, {}, {}, {}, -1}}};
  s = schedule::one_f_one_b(4, 1, s.chunks);
  s.microbatch_samples = {{0}};
  cost::CostModel cm(model, cluster);
  const auto costs = cm.step_costs(s, chunks, batch);
  CHECK(costs.static_bytes[2] == 18LL * 11 * 202383360);
  CHECK(costs.capacity_bytes[0] == 80LL << 30);
  // A text-only microbatch gives the vision chunk nothing to do, and only latency to send.
  CHECK(costs.f_ns[costs.at(0, 0)] == 0);
  CHECK(costs.send_f_ns[costs.at(0, 0)] == 3000);
  CHECK(costs.send_f_ns[costs.at(1, 0)] == cost::p2p_ns(cluster.intra_node, 100 * 4096 * 2));
}

TEST_CASE("pipeweaver cost: schedule chunks must tile the model", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  schedule::Schedule s;
  s.n_ranks = 2;
  s.chunks = {{"vision", 0, 24, 0}, {"vison", 0, 32, 1}};
  const common::Where w("schedule.json");
  auto err = [&] { return pwtest::error_of([&] { cost::resolve_chunks(model, s, w, "configs/llava-7b.json"); }); };
  CHECK(err() == "schedule.json: /chunks/1/module: no module named 'vison' in llava-7b.json");
  s.chunks = {{"vision", 0, 24, 0}, {"llm", 0, 16, 1}, {"llm", 17, 32, 1}};
  CHECK(err().find("/chunks/2/layers: expected the layers of 'llm' to continue at layer 16, got [17, 32)") != std::string::npos);
  s.chunks = {{"vision", 0, 24, 0}, {"llm", 0, 30, 1}};
  CHECK(err().find("layers [30, 32) of module 'llm' are in no chunk") != std::string::npos);
  s.chunks = {{"vision", 0, 24, 0}, {"llm", 0, 33, 1}};
  CHECK(err().find("module 'llm' has 32 layers, got [0, 33)") != std::string::npos);
  s.chunks = {{"llm", 0, 32, 0}, {"vision", 0, 24, 1}};
  CHECK(err().find("comes after the LLM's first chunk") != std::string::npos);
  // A projector with a chunk of its own is not folded.
  s.chunks = {{"vision", 0, 24, 0}, {"mm_projector", 0, 1, 0}, {"llm", 0, 32, 1}};
  const auto chunks = cost::resolve_chunks(model, s, w, "");
  CHECK(chunks[0].folded_projectors.empty());
  CHECK(chunks[0].carry == std::vector<std::pair<int, std::int64_t>>{{0, 1024}});
  CHECK(chunks[1].carry == std::vector<std::pair<int, std::int64_t>>{{1, 4096}});
}

TEST_CASE("pipeweaver cost: packers keep sample order and cover the batch", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  spec::Batch b;
  for (int t : {100, 300, 50, 700, 200, 200, 900, 10}) b.samples.push_back(spec::Sample{t, {}, {}, {}, -1});
  const auto budget = search::pack_token_budget(model, b, 600);
  CHECK(budget == std::vector<std::vector<std::int32_t>>{{0, 1, 2}, {3}, {4, 5}, {6}, {7}});
  const std::int32_t n = GENERATE(1, 2, 3, 5, 8);
  const auto even = search::pack_contiguous(model, b, n);
  REQUIRE(even.size() == static_cast<std::size_t>(n));
  std::int32_t next = 0;
  for (const auto& mb : even) {
    CHECK_FALSE(mb.empty());
    for (const auto i : mb) CHECK(i == next++);
  }
  CHECK(next == 8);
  CHECK_THROWS_AS(search::pack_contiguous(model, b, 9), common::UsageError);
}

TEST_CASE("pipeweaver cost: reuse on and off agree bit for bit on every batch of a trace", "[unit]") {
  struct Case {
    const char* model;
    const char* mix;
    const char* cluster;
  };
  const Case c = GENERATE(Case{"models/llava-7b.json", "mixes/llava-instruct.json", "clusters/h100-80g-8x.json"},
                          Case{"models/lmm-37b.json", "mixes/video-heavy.json", "clusters/h100-80g-16x.json"},
                          Case{"models/audio-vision-7b.json", "mixes/audio-image.json", "clusters/a100-80g-8x.json"});
  INFO(c.model);
  const spec::ModelSpec model = spec::load_model(config(c.model));
  const spec::ClusterSpec cluster = spec::load_cluster(config(c.cluster));
  const auto batches = make_trace(config(c.mix), model, 12, 7);
  const auto p = static_cast<std::int32_t>(cluster.pipeline_size);
  const auto layout = pwtest::balanced_chunks(model, batches, 2 * p);
  const schedule::Schedule base = schedule::interleaved_1f1b(p, 2 * p, layout);
  const auto chunks = cost::resolve_chunks(model, base, common::Where("gen"), "");
  cost::CostModel on(model, cluster), off(model, cluster);
  off.set_reuse(false);
  semu::ResultCache cache;
  for (int round = 0; round < 2; ++round) {  // the second round repeats every batch
    for (const spec::Batch& b : batches) {
      const schedule::Schedule s = with_packing(base, model, b);
      const cost::StepCosts a = on.step_costs(s, chunks, b), z = off.step_costs(s, chunks, b);
      REQUIRE(a.f_ns == z.f_ns);
      REQUIRE(a.i_ns == z.i_ns);
      REQUIRE(a.w_ns == z.w_ns);
      REQUIRE(a.b_ns == z.b_ns);
      REQUIRE(a.send_f_ns == z.send_f_ns);
      REQUIRE(a.send_b_ns == z.send_b_ns);
      REQUIRE(a.act_bytes == z.act_bytes);
      REQUIRE(a.act_w_bytes == z.act_w_bytes);
      REQUIRE(a.static_bytes == z.static_bytes);
      const semu::Result& ra = cache.simulate(s, a);
      const semu::Result rz = semu::simulate(s, z);
      REQUIRE(ra.step_ns == rz.step_ns);
      REQUIRE(ra.busy_ns == rz.busy_ns);
      REQUIRE(ra.peak_mem_bytes == rz.peak_mem_bytes);
      REQUIRE(ra.p2p_ns == rz.p2p_ns);
      CHECK(ra.step_ns > 0);
    }
  }
  CHECK(on.stats().chunk_hits > 0);
  CHECK(on.stats().spatial_hits > 0);
  CHECK(on.stats().temporal_hits > 0);
  CHECK(on.stats().layers_costed < off.stats().layers_costed / 4);
  CHECK(cache.hits() == static_cast<std::int64_t>(batches.size()));
}

TEST_CASE("pipeweaver cost: reuse is exact on V-shaped placements, reused outputs and recomputation", "[unit]") {
  // V-shaped placement (stage s on rank s, then back down: stages p - 1 and p share a
  // rank, so that boundary has no transfer), GPipe order; across two nodes of 16 ranks.
  struct Case {
    const char* model;
    const char* mix;
    const char* cluster;
  };
  const Case c = GENERATE(Case{"models/llava-7b.json", "mixes/llava-instruct.json", "clusters/h100-80g-8x.json"},
                          Case{"models/lmm-37b.json", "mixes/video-heavy.json", "clusters/h100-80g-16x.json"});
  INFO(c.model);
  const spec::ModelSpec model = spec::load_model(config(c.model));
  const spec::ClusterSpec cluster = spec::load_cluster(config(c.cluster));
  const auto batches = make_trace(config(c.mix), model, 6, 11);
  const auto p = static_cast<std::int32_t>(cluster.pipeline_size);
  const std::int32_t m = 4;
  schedule::Schedule base;
  base.n_ranks = p;
  base.n_microbatches = m;
  base.chunks = pwtest::balanced_chunks(model, batches, 2 * p);
  base.rank_actions.resize(static_cast<std::size_t>(p));
  for (std::int32_t st = 0; st < 2 * p; ++st) base.chunks[static_cast<std::size_t>(st)].rank = st < p ? st : 2 * p - 1 - st;
  for (std::int32_t r = 0; r < p; ++r) {
    auto& acts = base.rank_actions[static_cast<std::size_t>(r)];
    for (const std::int32_t st : {r, 2 * p - 1 - r})
      for (std::int32_t mb = 0; mb < m; ++mb) acts.push_back({st, schedule::Op::F, mb});
    for (const std::int32_t st : {2 * p - 1 - r, r})
      for (std::int32_t mb = m - 1; mb >= 0; --mb) acts.push_back({st, schedule::Op::B, mb});
  }
  REQUIRE_FALSE(schedule::find_problem(base).has_value());
  const auto chunks = cost::resolve_chunks(model, base, common::Where("gen"), "");
  for (const bool recompute : {false, true}) {
    cost::CostOptions o;
    o.recompute = recompute;
    cost::CostModel on(model, cluster, o), off(model, cluster, o);
    off.set_reuse(false);
    cost::StepCosts reused = cost::StepCosts::zeros(3, 50, 2);  // another shape, garbage inside
    std::fill(reused.f_ns.begin(), reused.f_ns.end(), -7);
    std::fill(reused.send_b_ns.begin(), reused.send_b_ns.end(), -7);
    for (const spec::Batch& b : batches) {
      const schedule::Schedule s = with_packing(base, model, b);
      const cost::StepCosts z = off.step_costs(s, chunks, b);
      on.step_costs(s, chunks, b, reused);
      for (const auto& [x, y] : {std::pair{&reused.f_ns, &z.f_ns}, {&reused.i_ns, &z.i_ns}, {&reused.w_ns, &z.w_ns},
                                 {&reused.b_ns, &z.b_ns}, {&reused.send_f_ns, &z.send_f_ns},
                                 {&reused.send_b_ns, &z.send_b_ns}, {&reused.act_bytes, &z.act_bytes},
                                 {&reused.act_w_bytes, &z.act_w_bytes}, {&reused.static_bytes, &z.static_bytes},
                                 {&reused.capacity_bytes, &z.capacity_bytes}})
        REQUIRE(*x == *y);
      REQUIRE(reused.n_stages == z.n_stages);
      // The turn of the V: no transfer; the neighbouring boundaries do transfer.
      for (std::int32_t mb = 0; mb < m; ++mb) {
        CHECK(z.send_f_ns[z.at(p - 1, mb)] == 0);
        CHECK(z.send_b_ns[z.at(p, mb)] == 0);
        CHECK(z.send_f_ns[z.at(p - 2, mb)] > 0);
        CHECK(z.send_f_ns[z.at(2 * p - 1, mb)] == 0);  // after the last stage
        CHECK(z.send_b_ns[z.at(0, mb)] == 0);          // before the first
      }
      const semu::Result a = semu::simulate(s, reused), ref = semu::simulate_reference(s, z);
      REQUIRE(a.step_ns == ref.step_ns);
      REQUIRE(a.peak_mem_bytes == ref.peak_mem_bytes);
    }
    CHECK(on.stats().spatial_hits > 0);
    // The first batch again: every chunk from the cache (temporal), the same costs.
    const std::int64_t before = on.stats().temporal_hits, costed = on.stats().layers_costed;
    const schedule::Schedule s0 = with_packing(base, model, batches[0]);
    on.step_costs(s0, chunks, batches[0], reused);
    CHECK(reused.f_ns == off.step_costs(s0, chunks, batches[0]).f_ns);
    CHECK(on.stats().temporal_hits > before);
    CHECK(on.stats().layers_costed == costed);
  }
}

TEST_CASE("pipeweaver cost: a chunk's own recomputation flag costs that chunk as the global option does", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  const spec::ClusterSpec cluster = spec::load_cluster(config("clusters/h100-80g-8x.json"));
  const auto batches = make_trace(config("mixes/llava-instruct.json"), model, 3, 5);
  const auto p = static_cast<std::int32_t>(cluster.pipeline_size);
  schedule::Schedule base;
  base.n_ranks = p;
  base.n_microbatches = 6;
  base.chunks = pwtest::balanced_chunks(model, batches, 2 * p);
  for (std::int32_t st = 0; st < 2 * p; ++st) base.chunks[static_cast<std::size_t>(st)].rank = st % p;
  cost::CostOptions everywhere;
  everywhere.recompute = true;
  cost::CostModel plain(model, cluster), global(model, cluster, everywhere), flagged(model, cluster), fresh(model, cluster);
  fresh.set_reuse(false);
  const std::set<std::int32_t> marked = {0, 3, 2 * p - 1};  // an encoder chunk, LLM chunks, the LM head's
  for (const spec::Batch& b : batches) {
    const schedule::Schedule s = with_packing(base, model, b);
    schedule::Schedule all = s, some = s;
    for (auto& c : all.chunks) c.recompute = true;
    for (const std::int32_t st : marked) some.chunks[static_cast<std::size_t>(st)].recompute = true;
    const auto info = [&](const schedule::Schedule& x) { return cost::resolve_chunks(model, x, common::Where("t"), ""); };
    const cost::StepCosts none = plain.step_costs(s, info(s), b), glob = global.step_costs(s, info(s), b);
    const cost::StepCosts every = flagged.step_costs(all, info(all), b);
    const cost::StepCosts part = flagged.step_costs(some, info(some), b);
    CHECK(every.f_ns == glob.f_ns);
    CHECK(every.i_ns == glob.i_ns);
    CHECK(every.w_ns == glob.w_ns);
    CHECK(every.act_bytes == glob.act_bytes);
    CHECK(every.act_w_bytes == glob.act_w_bytes);
    CHECK(fresh.step_costs(some, info(some), b).i_ns == part.i_ns);  // reuse stays exact
    for (std::int32_t st = 0; st < 2 * p; ++st)
      for (std::int32_t mb = 0; mb < s.n_microbatches; ++mb) {
        const std::size_t x = part.at(st, mb);
        const cost::StepCosts& want = marked.count(st) ? glob : none;
        INFO("stage " << st << " microbatch " << mb);
        CHECK(part.i_ns[x] == want.i_ns[x]);
        CHECK(part.act_bytes[x] == want.act_bytes[x]);
        if (marked.count(st) && none.act_bytes[x] > 0) CHECK(part.act_bytes[x] < none.act_bytes[x]);
      }
  }
}

TEST_CASE("pipeweaver cost: round_ns is llround", "[unit]") {
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<double> u(-1e7, 1e7);
  std::vector<double> xs = {0.0, -0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 0.49999999999999994, -0.49999999999999994,
                            4503599627370495.5, 4503599627370496.0, 9007199254740993.0, 1e15 + 0.5, 123456.5};
  for (int i = 0; i < 100000; ++i) {
    const double x = u(rng);
    xs.push_back(x);
    xs.push_back(std::floor(x) + 0.5);
  }
  for (const double x : xs) {
    INFO(x);
    REQUIRE(cost::round_ns(x) == std::llround(x));
  }
}

TEST_CASE("pipeweaver cost: microbatch loads into a reused vector equal fresh ones", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/audio-vision-7b.json"));
  const auto batches = make_trace(config("mixes/audio-image.json"), model, 3, 5);
  std::vector<cost::ModuleLoad> reused;
  for (const spec::Batch& b : batches)
    for (const auto& samples : search::pack_contiguous(model, b, 8)) {
      cost::microbatch_loads(model, b, samples, reused);
      REQUIRE(reused == cost::microbatch_loads(model, b, samples));
    }
  CHECK(reused.size() == model.modules.size());
}

TEST_CASE("pipeweaver cost: device profiles round-trip and interpolate in log space", "[unit]") {
  cost::EfficiencyCurve c;
  c.points = {{1e3, 0.1}, {1e5, 0.5}, {1e7, 0.9}};
  CHECK(c.at(1e4) == Approx(0.3));
  CHECK(c.at(1e6) == Approx(0.7));
  CHECK(c.at(1e2) == 0.1);  // clamped at the ends
  CHECK(c.at(1e9) == 0.9);
  CHECK(c.at(std::pow(10.0, 3.5)) == Approx(0.2));

  cost::DeviceProfile p;
  p.device_type = "cpu";
  p.device_name = "test CPU";
  p.backend = "eigen-f32";
  p.peak_flops = 5e10;
  p.peak_source = "measured";
  p.gemm = c;
  p.attention.points = {{1e6, 0.25}};
  const cost::DeviceProfile q = cost::parse_device_profile(cost::to_json(p), "p.json");
  CHECK(q.device_type == "cpu");
  CHECK(q.peak_flops == p.peak_flops);
  CHECK(q.gemm.points == p.gemm.points);
  CHECK(q.attention.points == p.attention.points);
  common::Json bad = cost::to_json(p);
  bad["gemm"]["points"][1][0] = 10.0;
  CHECK(pwtest::error_of([&] { cost::parse_device_profile(bad, "p.json"); }).find("p.json: /gemm/points/1/0") == 0);
  bad = cost::to_json(p);
  bad["device"]["type"] = "tpu";
  CHECK(pwtest::error_of([&] { cost::parse_device_profile(bad, "p.json"); }).find("/device/type") != std::string::npos);

  // The cost model uses the curve in place of the constant efficiency.
  cost::Device d = toy_device();
  d.profile = &p;
  CHECK(d.gemm_eff(1e4) == Approx(0.3));
  CHECK(d.attention_eff(1.0) == 0.25);
  const double flops = 2.0 * 10 * 10 * 50;  // 1e4 FLOPs at 30% of 1 TFLOP/s
  CHECK(cost::gemm_ns(d, 10, 10, 50, 2) == Approx(flops / 0.3e12 * 1e9));
}

TEST_CASE("pipeweaver cost: a profile's curve reproduces the efficiencies it was fitted to", "[unit]") {
  // Rates from a known efficiency curve, piecewise linear in log10 FLOPs: 0.2 up to 10^4.2
  // FLOPs per call, 0.6 at 10^6.2, 0.8 from 10^8.2 on. One call per half decade (none near
  // a half decade's edge), and two, 10^5.1 and 10^5.3, in one half decade: their point is
  // their mean, which on a straight piece is the curve at 10^5.2.
  const auto known = [](double f) {
    const double x = std::log10(f);
    if (x <= 4.2) return 0.2;
    if (x <= 6.2) return 0.2 + 0.2 * (x - 4.2);
    if (x <= 8.2) return 0.6 + 0.1 * (x - 6.2);
    return 0.8;
  };
  const double true_peak = 2e12;
  std::vector<std::pair<double, double>> rates;
  for (const double x : {3.2, 4.2, 4.7, 5.1, 5.3, 5.7, 6.2, 6.7, 7.2, 7.7, 8.2, 9.2})
    rates.emplace_back(std::pow(10.0, x), known(std::pow(10.0, x)) * true_peak);
  const std::vector<std::pair<double, double>> attention = {{std::pow(10.0, 5.1), 0.3e12},
                                                            {std::pow(10.0, 7.1), 0.5e12}};

  cost::DeviceProfile given;
  cost::set_efficiencies(given, rates, attention, true_peak);
  CHECK(given.peak_source == "given");
  CHECK(given.peak_flops == true_peak);
  REQUIRE(given.gemm.points.size() == rates.size() - 1);
  CHECK(given.gemm.points[3].first == Approx(std::pow(10.0, 5.2)));
  // The curve is the known one, at the calls, between them and beyond them.
  for (double x = 2.5; x <= 9.5; x += 0.125) {
    INFO("log10 FLOPs " << x);
    CHECK(given.gemm.at(std::pow(10.0, x)) == Approx(known(std::pow(10.0, x))).margin(1e-12));
  }
  CHECK(given.attention.at(1e4) == Approx(0.15));
  CHECK(given.attention.at(std::pow(10.0, 6.1)) == Approx(0.2));
  CHECK(given.attention.at(1e9) == Approx(0.25));

  // A measured peak is the best rate, 0.8 x 2e12, and every efficiency is relative to it.
  cost::DeviceProfile measured;
  cost::set_efficiencies(measured, rates, attention, 0);
  CHECK(measured.peak_source == "measured");
  CHECK(measured.peak_flops == Approx(0.8 * true_peak));
  for (double x = 2.5; x <= 9.5; x += 0.125) {
    INFO("log10 FLOPs " << x);
    CHECK(measured.gemm.at(std::pow(10.0, x)) == Approx(known(std::pow(10.0, x)) / 0.8).margin(1e-12));
  }
  CHECK(measured.attention.at(1e9) == Approx(0.5 / 1.6));
}

TEST_CASE("pipeweaver cost: a tiny calibration writes a valid profile", "[unit]") {
  cost::CalibrationOptions o;
  o.quick = true;
  o.max_dim = 128;
  o.seconds_per_shape = 0.002;
  int calls = 0;
  const cost::DeviceProfile p = cost::calibrate(o, [&](int, int) { ++calls; });
  CHECK(calls > 0);
  CHECK(p.peak_source == "measured");
  CHECK(p.peak_flops > 0);
  REQUIRE_FALSE(p.gemm.empty());
  // The peak is the best GEMM measured, and both curves are those of the raw measurements.
  CHECK(p.peak_flops == pwtest::best_rate(p.measurements.at("gemm")));
  pwtest::check_curve_reproduces(p.gemm, p.measurements.at("gemm"), p.peak_flops);
  pwtest::check_curve_reproduces(p.attention, p.measurements.at("attention"), p.peak_flops);
  const cost::DeviceProfile q = cost::parse_device_profile(cost::to_json(p), "p.json");
  CHECK(q.gemm.points.size() == p.gemm.points.size());
}

TEST_CASE("pipeweaver export: the Chrome trace has paired flows, named tracks and monotone counters", "[unit]") {
  const spec::ModelSpec model = spec::load_model(config("models/llava-7b.json"));
  const spec::ClusterSpec cluster = spec::load_cluster(config("clusters/h100-80g-8x.json"));
  const auto batches = make_trace(config("mixes/llava-instruct.json"), model, 1, 3);
  const auto layout = pwtest::balanced_chunks(model, batches, 8);
  const schedule::Schedule s = with_packing(schedule::interleaved_1f1b(4, 8, layout), model, batches[0]);
  const auto chunks = cost::resolve_chunks(model, s, common::Where("gen"), "");
  cost::CostModel cm(model, cluster);
  const cost::StepCosts costs = cm.step_costs(s, chunks, batches[0]);
  const semu::Result r = semu::simulate(s, costs, {.record_timeline = true});
  const common::Json doc = common::Json::parse(exporting::chrome_trace(s, costs, r, {"test", {}}).dump());

  REQUIRE(doc["traceEvents"].is_array());
  std::map<std::int64_t, int> starts, finishes;
  std::map<int, double> last_counter;
  std::set<std::string> process_names;
  int slices = 0;
  for (const auto& e : doc["traceEvents"]) {
    const std::string ph = e.at("ph");
    REQUIRE(e.contains("pid"));
    if (ph == "X") {
      ++slices;
      CHECK(e.contains("ts"));
      CHECK(e.contains("dur"));
      CHECK(e.contains("tid"));
      CHECK(e.at("dur").get<double>() >= 0);
      if (e.at("tid") == 0) {
        const std::string name = e.at("name");
        CHECK(name.find(" mb") != std::string::npos);
        CHECK(e.at("args").contains("module"));
        CHECK(e.at("args").contains("stage"));
      }
    } else if (ph == "M") {
      if (e.at("name") == "process_name") process_names.insert(e.at("args").at("name").get<std::string>());
    } else if (ph == "C") {
      const int pid = e.at("pid");
      const double ts = e.at("ts");
      if (last_counter.count(pid)) CHECK(ts >= last_counter[pid]);
      last_counter[pid] = ts;
      CHECK(e.at("args").at("bytes").get<std::int64_t>() >= costs.static_bytes[static_cast<std::size_t>(pid)]);
    } else if (ph == "s") {
      ++starts[e.at("id").get<std::int64_t>()];
    } else if (ph == "f") {
      ++finishes[e.at("id").get<std::int64_t>()];
      CHECK(e.at("bp") == "e");
    }
  }
  CHECK(slices == static_cast<int>(r.timeline.size()));
  CHECK(process_names == std::set<std::string>{"rank 0", "rank 1", "rank 2", "rank 3"});
  CHECK(last_counter.size() == 4);
  CHECK(starts.size() == static_cast<std::size_t>(r.n_transfers));
  CHECK(starts == finishes);
  for (const auto& [id, n] : starts) CHECK(n == 1);
  // The first forward on rank 0 is named like "F mb0 c0".
  bool found = false;
  for (const auto& e : doc["traceEvents"])
    if (e.at("ph") == "X" && e.at("name") == "F mb0 c0") found = e.at("pid") == 0 && e.at("ts") == 0.0;
  CHECK(found);
}
