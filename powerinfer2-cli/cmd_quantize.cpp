// `powerinfer2-cli quantize IN.gguf OUT.gguf q8_0|q4_0 [-t THREADS]`: a GGUF model with its
// weight matrices in Q8_0 or Q4_0 (llama-quantize --pure), bytes as llama.cpp writes them.
#include <memory>
#include <optional>
#include <string>

#include "commands.hpp"
#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/thread_pool.hpp"
#include "common/timer.hpp"
#include "common/units.hpp"
#include "io/gguf_types.hpp"
#include "prep/quantize_file.hpp"

namespace powerinfer2::cli {

namespace {

struct QuantizeOptions {
  std::string input, output, type;
  std::size_t threads = 0;
};

io::GgmlType parse_type(const std::string& name) {
  const std::optional<io::GgmlType> t = io::ggml_type_from_name(name);
  if (t == io::GgmlType::Q8_0 || t == io::GgmlType::Q4_0) return *t;
  throw common::UsageError("unknown quantization type '" + name + "'", "valid types: q8_0, q4_0");
}

void run_quantize(const QuantizeOptions& o) {
  const io::GgmlType type = parse_type(o.type);
  common::ThreadPool pool(o.threads);
  common::Stopwatch clock;
  const prep::QuantizeReport r = prep::quantize_gguf(o.input, o.output, type, pool);
  for (const prep::QuantizedTensor& t : r.tensors) {
    if (t.kept_because.empty()) continue;
    // A 2-D weight left unquantized deserves attention; norms and the like do not.
    if (t.kept_because.rfind("row length", 0) == 0)
      common::log_info("kept ", t.name, " in ", io::ggml_type_name(t.from), ": ", t.kept_because);
    else
      common::log_verbose("kept ", t.name, " in ", io::ggml_type_name(t.from), ": ", t.kept_because);
  }
  common::log_info("quantized ", r.n_quantized(), " of ", r.tensors.size(), " tensors to ", io::ggml_type_name(type),
                   ": ", common::format_size(r.bytes_in), " -> ", common::format_size(r.bytes_out), " of tensor data in ",
                   static_cast<int>(clock.elapsed_ms()), " ms; wrote ", o.output);
}

}  // namespace

void register_quantize(common::CliApp& cli) {
  auto opts = std::make_shared<QuantizeOptions>();
  CLI::App* cmd = cli.add_command("quantize", "Quantize a GGUF model's weight matrices to Q8_0 or Q4_0",
                                  [opts] { run_quantize(*opts); });
  cmd->add_option("INPUT", opts->input, "GGUF model with F32 / F16 / BF16 weights")->required();
  cmd->add_option("OUTPUT", opts->output, "GGUF file to write")->required();
  cmd->add_option("TYPE", opts->type, "q8_0 or q4_0")->required();
  cmd->add_option("-t,--threads", opts->threads, "Threads (0 = one per hardware thread)")->default_val(0);
}

}  // namespace powerinfer2::cli
