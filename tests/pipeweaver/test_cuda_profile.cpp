// `profile --device cuda`: the refusal without a device ([unit]), and on a device ([cuda])
// the cuBLAS GEMM and unfused attention against a double-precision CPU reference, the
// calibration's profile, and the CLI's profile accepted by `simulate --device-profile`.
#include <algorithm>
#include <filesystem>
#include <tuple>

#include "common/cuda.hpp"
#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "common/json_io.hpp"
#include "cost/calibrate_cuda.hpp"
#include "cost/device_profile.hpp"
#include "profile_test_util.hpp"
#include "spec_test_util.hpp"

using namespace pipeweaver;
using pwtest::config;

namespace {

const std::string kCli = PIPEWEAVER_CLI;

// BF16 inputs are exact in the reference; the error is BF16 rounding of the outputs (and of
// S and P for attention): ~2^-9 relative per element, well under these.
constexpr double kGemmTolerance = 1e-2;
constexpr double kAttentionTolerance = 2e-2;

std::string quoted(const std::string& s) {
  return testing::shell_quote(s);
}

testing::CommandResult cli(const std::string& args) {
  return testing::run_cli(kCli, args);
}

bool has_device() {
  return common::cuda::device_count() > 0;
}

std::size_t line_count(const std::string& text) {
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n'));
}

bool dir_empty(const std::filesystem::path& dir) {
  return std::filesystem::directory_iterator(dir) == std::filesystem::directory_iterator();
}

}  // namespace

TEST_CASE("pipeweaver cuda: profile --device cuda without a device refuses in one line, writes nothing",
          "[unit]") {
  if (has_device()) PWPI_SKIP("a CUDA device is present; the refusal is tested on machines without one");
  testing::TempDir dir;
  const auto out = dir / "p.json";
  const auto r = cli("profile --device cuda --quick -o " + quoted(out.string()));
  INFO(r.err);
  CHECK(r.exit_code == 4);
  CHECK(r.err.rfind("error: ", 0) == 0);
  CHECK(r.err.find("no CUDA device: ") != std::string::npos);
  CHECK(line_count(r.err) == 1);
  CHECK(r.out.empty());
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK(dir_empty(dir.path()));

  // The library refuses the same way, before any work.
  cost::CalibrationOptions o;
  o.quick = true;
  CHECK(pwtest::error_of([&] { cost::calibrate_cuda(o); }).find("no CUDA device: ") != std::string::npos);
  CHECK_THROWS_AS(cost::cuda_gemm_check_rel_error(8, 8, 8), common::IoError);
  CHECK_THROWS_AS(cost::cuda_attention_check_rel_error(8, 1, 128), common::IoError);
}

TEST_CASE("pipeweaver cuda: cuBLAS is loaded on first use, with every function the calibration calls",
          "[unit]") {
  if (!common::cuda::compiled()) PWPI_SKIP("this build has no CUDA support");
  // Not at start: linked, cuBLAS would cost every pipeweaver-cli start ~0.1 s and ~200 MB RSS.
  const auto mapped = [] {
    return common::read_file("/proc/self/maps").find("libcublas") != std::string::npos;
  };
  CHECK_FALSE(mapped());
  const std::string lib = cost::cuda_cublas_library();  // dlopen + every dlsym; no device needed
  INFO(lib);
  CHECK(lib.find("libcublas.so.") != std::string::npos);
  CHECK(lib.find("(cuBLAS ") != std::string::npos);
  CHECK(mapped());
}

TEST_CASE("pipeweaver cuda: profile --device tpu is a usage error", "[unit]") {
  testing::TempDir dir;
  const auto out = dir / "p.json";
  const auto r = cli("profile --device tpu -o " + quoted(out.string()));
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--device") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(out));
}

TEST_CASE("pipeweaver cuda: cuBLAS GEMM and unfused attention match a double CPU reference", "[cuda]") {
  if (!has_device()) PWPI_SKIP(common::cuda::no_device_message());
  SECTION("gemm y = x w^T") {
    // Odd and degenerate sizes: cuBLAS's unaligned paths, k = 1, one row.
    const auto [m, n, k] = GENERATE(
        table<int, int, int>({{67, 45, 129}, {1, 300, 77}, {128, 256, 64}, {513, 130, 1000}, {33, 17, 1}}));
    const double err = cost::cuda_gemm_check_rel_error(m, n, k);
    INFO("m=" << m << " n=" << n << " k=" << k << " rel error " << err << " (tolerance " << kGemmTolerance
              << ")");
    CHECK(err < kGemmTolerance);
  }
  SECTION("attention softmax(Q K^T / sqrt(d)) V") {
    const auto [len, heads, d] =
        GENERATE(table<int, int, int>({{77, 2, 128}, {1, 1, 128}, {300, 3, 64}, {1025, 2, 128}}));
    const double err = cost::cuda_attention_check_rel_error(len, heads, d);
    INFO("L=" << len << " heads=" << heads << " d=" << d << " rel error " << err << " (tolerance "
              << kAttentionTolerance << ")");
    CHECK(err < kAttentionTolerance);
  }
}

TEST_CASE("pipeweaver cuda: a quick calibration gives a valid profile with plausible rates", "[cuda]") {
  if (!has_device()) PWPI_SKIP(common::cuda::no_device_message());
  cost::CalibrationOptions o;
  o.quick = true;
  o.seconds_per_shape = 0.01;
  int calls = 0, last_total = 0;
  const cost::DeviceProfile p = cost::calibrate_cuda(o, [&](int done, int total) {
    ++calls;
    CHECK(done == calls);
    last_total = total;
  });
  CHECK(calls == last_total);
  CHECK(p.device_type == "cuda");
  CHECK(p.backend == "cublas-bf16");
  CHECK(p.device_name == common::cuda::device_info().name);
  CHECK(p.peak_source == "measured");
  REQUIRE_FALSE(p.gemm.empty());
  REQUIRE_FALSE(p.attention.empty());
  // The curves are those of the raw measurements against the best GEMM measured.
  CHECK(p.peak_flops == pwtest::best_rate(p.measurements.at("gemm")));
  pwtest::check_curve_reproduces(p.gemm, p.measurements.at("gemm"), p.peak_flops);
  pwtest::check_curve_reproduces(p.attention, p.measurements.at("attention"), p.peak_flops);

  // The largest GEMM (4096 x 4096 x 11008, 369 GFLOP) runs far above 1 TFLOP/s on any
  // tensor-core GPU; an A100 or H100 reaches hundreds.
  const common::Json& rows = p.measurements.at("gemm");
  REQUIRE(rows.size() > 0);
  const auto largest =
      std::max_element(rows.begin(), rows.end(), [](const common::Json& a, const common::Json& b) {
        return a.at("flops").get<double>() < b.at("flops").get<double>();
      });
  INFO("largest GEMM " << largest->dump());
  CHECK(largest->at("flops_per_s").get<double>() > 1e12);
  for (const auto& a : p.measurements.at("attention")) CHECK(a.at("flops_per_s").get<double>() > 0);
  CHECK(p.measurements.at("checks").at("gemm").at("rel_error").get<double>() < kGemmTolerance);
  CHECK(p.measurements.at("checks").at("attention").at("rel_error").get<double>() < kAttentionTolerance);

  const cost::DeviceProfile q = cost::parse_device_profile(cost::to_json(p), "p.json");
  CHECK(q.device_type == "cuda");
  CHECK(q.gemm.points == p.gemm.points);
  CHECK(q.attention.points == p.attention.points);
}

TEST_CASE("pipeweaver cuda: profile --device cuda writes a profile that simulate uses", "[cuda]") {
  if (!has_device()) PWPI_SKIP(common::cuda::no_device_message());
  testing::TempDir dir;
  const auto prof = dir / "device.json";
  const auto r = cli("profile --device cuda --quick --peak-gflops 989000 --json -o " + quoted(prof.string()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const common::Json summary = common::Json::parse(r.out);
  CHECK(summary.at("device_type") == "cuda");
  CHECK(summary.at("peak_source") == "given");
  const common::Json p = common::Json::parse(common::read_file(prof.string()));
  CHECK(p.at("device").at("type") == "cuda");
  CHECK(p.at("peak_flops").get<double>() == Approx(989000e9));

  const std::string trace = (dir / "t.jsonl").string();
  const auto g = cli("gen-trace -q --mix " + config("mixes/llava-instruct.json") + " --model " +
                     config("models/llava-7b.json") + " --batches 2 --seed 2 -o " + quoted(trace));
  REQUIRE(g.exit_code == 0);
  const auto s = cli("simulate --model " + config("models/llava-7b.json") + " --cluster " +
                     config("clusters/h100-80g-8x.json") + " --trace " + quoted(trace) +
                     " --schedule 1f1b --json --device-profile " + quoted(prof.string()));
  INFO(s.err);
  REQUIRE(s.exit_code == 0);
  CHECK(common::Json::parse(s.out).at("device_profile").at("type") == "cuda");
}
