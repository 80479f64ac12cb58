// The cluster spec: how many pipeline ranks (and data-parallel replicas) train the model,
// what one device can do, and the links between neighbouring pipeline ranks.
#pragma once

#include <cstdint>
#include <string>

#include "common/json_io.hpp"

namespace pipeweaver::spec {

/// A point-to-point link between two pipeline ranks, one direction.
struct LinkSpec {
  double bandwidth_bytes_per_s = 0.0;  // per direction
  double latency_ns = 0.0;             // per message
};

struct DeviceSpec {
  std::string name;
  double peak_flops = 0.0;             // dense BF16 FLOP/s
  std::uint64_t memory_bytes = 0;      // HBM capacity
  double hbm_bytes_per_s = 0.0;        // HBM bandwidth
  double gemm_efficiency = 0.6;        // achieved / peak for GEMMs (MFU-style)
  double attention_efficiency = 0.45;  // achieved / peak for attention kernels
};

struct ClusterSpec {
  std::string name;
  std::string notes;
  std::int64_t pipeline_size = 1;       // pipeline ranks (stages' devices) per replica
  std::int64_t data_parallel_size = 1;  // pipeline replicas
  std::int64_t ranks_per_node = 1;      // consecutive pipeline ranks sharing a node
  DeviceSpec device;
  LinkSpec intra_node;  // e.g. NVLink
  LinkSpec inter_node;  // e.g. InfiniBand; meaningful when has_inter_node
  bool has_inter_node = false;

  std::int64_t node_of(std::int64_t rank) const { return rank / ranks_per_node; }
  /// The link a message from pipeline rank `from` to rank `to` uses.
  const LinkSpec& link(std::int64_t from, std::int64_t to) const {
    return node_of(from) == node_of(to) ? intra_node : inter_node;
  }
};

/// Parses and validates a cluster spec; errors name `file` and the JSON pointer.
ClusterSpec parse_cluster(const common::Json& doc, const std::string& file);
ClusterSpec load_cluster(const std::string& path);

}  // namespace pipeweaver::spec
