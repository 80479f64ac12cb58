// The cluster spec: shipped configs carry the public device figures; errors name fields.
#include <filesystem>

#include "spec/cluster.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver::spec;
using pwtest::config;
using pwtest::error_of;

namespace {

common::Json base_cluster() {
  return common::Json::parse(R"({
    "version": 1, "pipeline_size": 4, "ranks_per_node": 4,
    "device": {"peak_tflops": 312, "memory": "80GiB", "hbm_gb_per_s": 2039},
    "links": {"intra_node": {"bandwidth_gb_per_s": 300, "latency_us": 3}}
  })");
}

std::string cluster_error(const common::Json& doc) {
  return error_of([&] { parse_cluster(doc, "c.json"); });
}

}  // namespace

TEST_CASE("pipeweaver cluster: every shipped cluster config loads", "[unit]") {
  int n = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(testing::source_dir() / "configs" / "clusters")) {
    INFO(entry.path());
    const ClusterSpec c = load_cluster(entry.path().string());
    CHECK(c.pipeline_size >= 8);
    CHECK(c.device.memory_bytes == 80ull << 30);
    CHECK(!c.notes.empty());
    ++n;
  }
  CHECK(n >= 2);
}

TEST_CASE("pipeweaver cluster: A100 and H100 figures in SI units", "[unit]") {
  const ClusterSpec a = load_cluster(config("clusters/a100-80g-8x.json"));
  CHECK(a.device.peak_flops == 312e12);
  CHECK(a.device.hbm_bytes_per_s == 2039e9);
  CHECK(a.intra_node.bandwidth_bytes_per_s == 300e9);  // 600 GB/s bidirectional NVLink 3
  CHECK(a.intra_node.latency_ns == 3000.0);
  const ClusterSpec h = load_cluster(config("clusters/h100-80g-16x.json"));
  CHECK(h.device.peak_flops == 989e12);
  CHECK(h.device.hbm_bytes_per_s == 3350e9);
  CHECK(h.intra_node.bandwidth_bytes_per_s == 450e9);
  CHECK(h.pipeline_size == 16);
  // Ranks 0-7 share a node; 7 -> 8 crosses InfiniBand (400 Gb/s = 50 GB/s).
  CHECK(h.link(6, 7).bandwidth_bytes_per_s == 450e9);
  CHECK(h.link(7, 8).bandwidth_bytes_per_s == 50e9);
  CHECK(h.device.gemm_efficiency > 0.3);
  CHECK(h.device.attention_efficiency > 0.2);
}

TEST_CASE("pipeweaver cluster: errors name the field", "[unit]") {
  common::Json doc = base_cluster();
  CHECK(cluster_error(doc) == "(no error)");
  doc.erase("version");
  CHECK(
      cluster_error(doc) ==
      "c.json: /version: missing required member (every pipeweaver cluster file declares its format version; "
      "this build reads version 1)");

  doc = base_cluster();
  doc["pipeline_size"] = 16;
  CHECK(cluster_error(doc) ==
        "c.json: /links/inter_node: missing required member: pipeline_size 16 spans 4 nodes of 4 ranks");

  doc = base_cluster();
  doc["device"]["gemm_efficiency"] = 1.5;
  CHECK(cluster_error(doc) == "c.json: /device/gemm_efficiency: expected a number in [0.01, 1], got 1.5");

  doc = base_cluster();
  doc["device"]["memory"] = "80 gigs";
  CHECK(cluster_error(doc).rfind(
            "c.json: /device/memory: expected a size such as \"80GiB\" or a number of bytes, "
            "got the string \"80 gigs\"",
            0) == 0);

  doc = base_cluster();
  doc["device"]["peak_tflops"] = -312;
  CHECK(cluster_error(doc) == "c.json: /device/peak_tflops: expected a positive number, got -312");

  doc = base_cluster();
  doc["links"]["intra_node"]["bandwidth"] = 300;
  CHECK(
      cluster_error(doc) ==
      "c.json: /links/intra_node/bandwidth: unknown member; expected one of: bandwidth_gb_per_s, latency_us");
}
