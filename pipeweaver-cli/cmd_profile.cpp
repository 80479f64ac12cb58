// profile: measures GEMM and attention throughput on this machine's CPU (Eigen, float32)
// or its CUDA device (cuBLAS, BF16) and writes a device profile whose efficiency curves
// `simulate --device-profile` uses.
#include <iomanip>
#include <iostream>
#include <memory>
#include <sstream>

#include "commands.hpp"
#include "common/file_io.hpp"
#include "common/log.hpp"
#include "common/progress.hpp"
#include "common/timer.hpp"
#include "cost/calibrate.hpp"
#include "cost/calibrate_cuda.hpp"

namespace pipeweaver::cli {

namespace {

struct ProfileArgs {
  std::string output;
  std::string device = "cpu";  // "cpu" | "cuda"
  bool quick = false;
  double peak_gflops = 0.0;
  bool json = false;
};

void run_profile(const ProfileArgs& a) {
  cost::CalibrationOptions o;
  o.quick = a.quick;
  o.peak_flops = a.peak_gflops * 1e9;
  common::Stopwatch watch;
  std::unique_ptr<common::ProgressBar> bar;
  const auto progress = [&](int done, int total) {
    if (!bar) bar = std::make_unique<common::ProgressBar>("profile", static_cast<std::uint64_t>(total));
    bar->advance();
    (void)done;
  };
  // Throws IoError ("... no CUDA device: <why>") before anything is written.
  const cost::DeviceProfile p =
      a.device == "cuda" ? cost::calibrate_cuda(o, progress) : cost::calibrate(o, progress);
  if (bar) bar->finish();
  const common::Json doc = cost::to_json(p);
  common::write_file_atomic(a.output, doc.dump(2) + "\n");
  if (a.json) {
    std::cout << common::Json{{"output", a.output},
                              {"device", p.device_name},
                              {"device_type", p.device_type},
                              {"peak_gflops", p.peak_flops * 1e-9},
                              {"peak_source", p.peak_source},
                              {"gemm_points", p.gemm.points.size()},
                              {"attention_points", p.attention.points.size()},
                              {"seconds", watch.elapsed_s()}}
                     .dump()
              << std::endl;
    return;
  }
  std::ostringstream s;
  s << std::fixed << std::setprecision(1);
  s << "profile: " << p.device_type << " " << p.device_name << " (" << p.backend << ", " << p.threads
    << " thread" << (p.threads == 1 ? "" : "s") << "), peak " << p.peak_flops * 1e-9 << " GFLOP/s ("
    << p.peak_source << ") in " << watch.elapsed_s() << " s -> " << a.output;
  common::log_info(s.str());
  auto curve = [](const char* name, const cost::EfficiencyCurve& c) {
    std::ostringstream line;
    line << "  " << name << " efficiency:";
    line << std::setprecision(2);
    for (const auto& [x, e] : c.points) line << " " << std::scientific << x << std::fixed << "->" << e;
    common::log_info(line.str());
  };
  curve("GEMM", p.gemm);
  curve("attention", p.attention);
}

}  // namespace

void register_profile(common::CliApp& cli) {
  auto args = std::make_shared<ProfileArgs>();
  CLI::App* cmd = cli.add_command("profile", "Measure this machine's GEMM and attention throughput into a device profile",
                                  [args] { run_profile(*args); });
  cmd->add_option("-o,--output", args->output, "Device profile to write (JSON)")->required();
  cmd->add_option("--device", args->device,
                  "cpu (Eigen float32 on this CPU) or cuda (cuBLAS BF16 on CUDA device 0)")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  cmd->add_flag("--quick", args->quick, "A small grid and short timings (a few seconds)");
  cmd->add_option("--peak-gflops", args->peak_gflops,
                  "Efficiencies relative to this peak (GFLOP/s) instead of the best call measured")
      ->check(CLI::Range(1e-3, 1e9));
  cmd->add_flag("--json", args->json, "Print a summary as one JSON object on stdout");
}

}  // namespace pipeweaver::cli
