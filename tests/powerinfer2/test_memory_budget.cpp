// The memory budget against the operating system's count: `generate` on a converted sparse
// model, run as a child process at several budgets, keeps its peak resident set (the whole
// process: the program's code and libraries, the weights, run state and neuron cache) within
// the budget + 5%.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/file_io.hpp"
#include "test_support.hpp"

namespace {

struct ChildRun {
  int exit_code = -1;
  std::uint64_t peak_rss_bytes = 0;  // the child's own, from wait4
  std::string out;
};

// Runs argv (argv[0] a path) with stdout to `out_path` and stderr to `err_path`.
ChildRun run_measured(const std::vector<std::string>& args, const std::filesystem::path& out_path,
                      const std::filesystem::path& err_path) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0 || err < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0) ::_exit(126);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  rusage ru{};
  REQUIRE(::wait4(pid, &status, 0, &ru) == pid);
  ChildRun r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.peak_rss_bytes = static_cast<std::uint64_t>(ru.ru_maxrss) * 1024;  // KiB on Linux
  r.out = common::read_file(out_path.string());
  return r;
}

void make(const std::string& args) {
  const testing::CommandResult r = testing::run_cli(MAKE_MODEL, args);
  INFO(args << "\n" << r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_CASE("powerinfer2 memory budget: peak RSS of generate stays within the budget + 5%", "[slow]") {
#if defined(__SANITIZE_ADDRESS__)
  PWPI_SKIP("AddressSanitizer's shadow memory counts in the resident set of a sanitized build");
#endif
  testing::TempDir dir;
  const std::string tiny = (dir / "tiny.gguf").string(), dense = (dir / "m.gguf").string();
  const std::string conv = (dir / "m.pi2.gguf").string();
  // Two layers of the 1b shape (Q8_0: 35 MiB of FFN and 9 MiB of attention per layer) with the
  // tiny preset's 512-token vocabulary, so that the budgets are tens of MiB, not the embedding's.
  make("-q --preset tiny --type q8_0 --seed 5 -o " + testing::shell_quote(tiny));
  make("-q --preset 1b --layers 2 --vocab " + testing::shell_quote(tiny) +
       " --type q8_0 --activation reglu --sparsity 0.8 --seed 3 -t 2 -o " + testing::shell_quote(dense));
  const testing::CommandResult c = testing::run_cli(
      POWERINFER2_CLI, "convert -m " + testing::shell_quote(dense) + " -o " + testing::shell_quote(conv) + " -t 2");
  INFO(c.err);
  REQUIRE(c.exit_code == 0);

  for (const std::vector<std::string>& budget :
       std::vector<std::vector<std::string>>{{}, {"--offload-ffn", "0.5"}, {"--offload-ffn", "0.9"},
                                             {"--memory-budget", "72MiB"}, {"--memory-budget", "100MiB"}}) {
    std::vector<std::string> args{POWERINFER2_CLI, "generate", "-m",     conv, "-p", "Once upon a time", "-n", "16",
                                  "--temp",        "0",        "-t",     "2",  "-c", "64",               "--json"};
    args.insert(args.end(), budget.begin(), budget.end());
    const ChildRun r = run_measured(args, dir / "g.out", dir / "g.err");
    INFO((budget.empty() ? std::string("unlimited") : budget[0] + " " + budget[1]) << "\n"
         << common::read_file((dir / "g.err").string()));
    REQUIRE(r.exit_code == 0);
    const nlohmann::json j = nlohmann::json::parse(r.out);
    const std::uint64_t planned = j["fixed_bytes"].get<std::uint64_t>() + j["hot_bytes"].get<std::uint64_t>() +
                                  j["cold_bytes"].get<std::uint64_t>() + j["stream_bytes"].get<std::uint64_t>();
    const std::uint64_t limit = j["memory_budget_bytes"].get<std::uint64_t>();
    if (limit > 0) CHECK(planned <= limit);
    const std::uint64_t budget_bytes = limit > 0 ? limit : planned;  // unlimited: what the plan holds
    // The program's own share is measured, not assumed: it must be in the plan's fixed part.
    CHECK(j["program_bytes"].get<std::uint64_t>() > 0);
    CHECK(j["program_bytes"].get<std::uint64_t>() < j["fixed_bytes"].get<std::uint64_t>());
    INFO("peak RSS " << r.peak_rss_bytes << " B; budget " << budget_bytes << " B (plan " << planned
                     << " B, of which the program " << j["program_bytes"].get<std::uint64_t>() << " B)");
    CHECK(static_cast<double>(r.peak_rss_bytes) <= 1.05 * static_cast<double>(budget_bytes));
  }
}
