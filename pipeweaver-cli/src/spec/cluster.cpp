#include "spec/cluster.hpp"

#include "common/units.hpp"
#include "spec/read.hpp"

namespace pipeweaver::spec {

using common::JsonView;

namespace {

LinkSpec parse_link(const JsonView& v) {
  v.allow_only({"bandwidth_gb_per_s", "latency_us"});
  LinkSpec link;
  link.bandwidth_bytes_per_s = detail::positive_number(v, "bandwidth_gb_per_s", 1e5) * 1e9;
  link.latency_ns = v.at("latency_us").as_number(0.0, 1e6) * 1e3;
  return link;
}

std::uint64_t parse_memory(const JsonView& v) {
  if (v.raw().is_string()) {
    common::SizeParse r = common::try_parse_size(v.as_string());
    if (!r.bytes || *r.bytes == 0) v.fail("a size such as \"80GiB\" or a number of bytes", r.error);
    return *r.bytes;
  }
  return static_cast<std::uint64_t>(v.as_int(1, std::int64_t{1} << 50));
}

}  // namespace

ClusterSpec parse_cluster(const common::Json& doc, const std::string& file) {
  JsonView root = common::json_root(doc, file);
  common::require_version(root, "pipeweaver cluster", 1, 1);
  root.allow_only({"version", "name", "notes", "pipeline_size", "data_parallel_size", "ranks_per_node",
                   "device", "links"});
  ClusterSpec c;
  c.name = root.string_or("name", "");
  c.notes = detail::notes_or_empty(root);
  c.pipeline_size = root.at("pipeline_size").as_int(1, 4096);
  c.data_parallel_size =
      root.find("data_parallel_size") ? root.at("data_parallel_size").as_int(1, 1 << 20) : 1;
  c.ranks_per_node = root.at("ranks_per_node").as_int(1, 1024);

  JsonView dev = root.at("device");
  dev.allow_only(
      {"name", "peak_tflops", "memory", "hbm_gb_per_s", "gemm_efficiency", "attention_efficiency"});
  c.device.name = dev.string_or("name", "");
  c.device.peak_flops = detail::positive_number(dev, "peak_tflops", 1e5) * 1e12;
  c.device.memory_bytes = parse_memory(dev.at("memory"));
  c.device.hbm_bytes_per_s = detail::positive_number(dev, "hbm_gb_per_s", 1e6) * 1e9;
  if (auto e = dev.find("gemm_efficiency")) c.device.gemm_efficiency = e->as_number(0.01, 1.0);
  if (auto e = dev.find("attention_efficiency")) c.device.attention_efficiency = e->as_number(0.01, 1.0);

  JsonView links = root.at("links");
  links.allow_only({"intra_node", "inter_node"});
  c.intra_node = parse_link(links.at("intra_node"));
  if (auto inter = links.find("inter_node")) {
    c.inter_node = parse_link(*inter);
    c.has_inter_node = true;
  } else if (c.pipeline_size > c.ranks_per_node) {
    const std::int64_t nodes = (c.pipeline_size + c.ranks_per_node - 1) / c.ranks_per_node;
    throw common::InputError::message(
        links.where().with_pointer(links.pointer() + "/inter_node"),
        "missing required member: pipeline_size " + std::to_string(c.pipeline_size) + " spans " +
            std::to_string(nodes) + " nodes of " + std::to_string(c.ranks_per_node) + " ranks",
        "describe the link between nodes (e.g. InfiniBand: bandwidth_gb_per_s 25 or 50, latency_us 5)");
  }
  return c;
}

ClusterSpec load_cluster(const std::string& path) {
  return parse_cluster(common::load_json_file(path), path);
}

}  // namespace pipeweaver::spec
