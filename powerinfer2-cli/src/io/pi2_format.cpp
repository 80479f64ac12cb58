#include "io/pi2_format.hpp"

namespace powerinfer2::io {

std::string pi2_layer_tensor(std::size_t layer, std::string_view suffix) {
  return "blk." + std::to_string(layer) + "." + std::string(suffix);
}

bool is_pi2_ffn_tensor(std::string_view name) {
  if (!name.starts_with("blk.")) return false;
  for (const char* s : {".ffn_gate.weight", ".ffn_up.weight", ".ffn_down.weight", ".ffn_bundles", ".ffn_freq",
                        ".ffn_perm", ".pred_w1", ".pred_gate", ".pred_gate_b", ".pred_up", ".pred_up_b",
                        ".fc1.weight", ".fc2.weight", ".ffn_down_t.weight"})
    if (name.ends_with(s)) return true;
  return false;
}

bool is_pi2_bundle_tensor(std::string_view name) { return name.starts_with("blk.") && name.ends_with(".ffn_bundles"); }

bool is_pi2(const GgufFile& file) { return file.has(kPi2VersionKey); }

}  // namespace powerinfer2::io
