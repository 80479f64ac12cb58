// `powerinfer2-cli convert -m MODEL.gguf -o MODEL.pi2.gguf [--cluster-size N]`: the FFN of a
// ReGLU / dReLU model (or of a converted file, re-clustered) into the sparse engine's bundles.
#include <cstdio>
#include <memory>
#include <string>

#include "commands.hpp"
#include "io/gguf_types.hpp"
#include "prep/prepare.hpp"

namespace powerinfer2::cli {

namespace {

void run_convert(const prep::PrepareOptions& o) {
  const prep::ConvertResult r = prep::convert(o);
  std::printf("%s: %u layers x %u neurons in clusters of %zu (%zu bytes per bundle, %zu per cluster), %s, %.1f s\n",
              o.out.c_str(), r.config.n_layer, r.config.ffn_dim, r.geo.cluster_size, r.geo.stride,
              r.geo.cluster_bytes(), std::string(io::ggml_type_name(r.geo.type)).c_str(), r.seconds);
}

}  // namespace

void register_convert(common::CliApp& cli) {
  auto o = std::make_shared<prep::PrepareOptions>();
  CLI::App* cmd = cli.add_command("convert", "Convert a ReGLU/dReLU GGUF model to the sparse engine's bundle file",
                                  [o] { run_convert(*o); });
  cmd->add_option("-m,--model", o->model, "GGUF model (dense FFN matrices, or a converted file to re-cluster)")->required();
  cmd->add_option("-o,--output", o->out, "Converted file to write (.pi2.gguf)")->required();
  cmd->add_option("--cluster-size", o->cluster_size, "Neurons per cluster (one read; default 32, or the input's)");
  cmd->add_option("-t,--threads", o->threads, "Threads")->capture_default_str();
}

}  // namespace powerinfer2::cli
