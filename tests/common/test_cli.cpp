#include "common/cli.hpp"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "test_support.hpp"

namespace {
int exit_code_of(std::function<void()> fn) { return common::run_guarded(fn); }

// Runs a CliApp on an argument list.
int run_app(common::CliApp& cli, std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return cli.run(static_cast<int>(argv.size()), argv.data());
}

// Runs a CliApp with stderr sent to a file; returns what it wrote there.
std::string stderr_of(common::CliApp& cli, std::vector<std::string> args, int& code) {
  testing::TempDir dir;
  const std::string path = (dir / "stderr.txt").string();
  std::fflush(stderr);
  const int saved = ::dup(2);
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f != nullptr);
  ::dup2(::fileno(f), 2);
  code = run_app(cli, std::move(args));
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  std::fclose(f);
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
}  // namespace

TEST_CASE("run_guarded maps each error kind to its exit code", "[unit]") {
  CHECK(exit_code_of([] {}) == 0);
  CHECK(exit_code_of([] { throw common::UsageError("bad flag"); }) == 2);
  CHECK(exit_code_of([] { throw common::InputError(common::Where{"f.json"}, "x", "y"); }) == 3);
  CHECK(exit_code_of([] { throw common::IoError("f", "read", EIO); }) == 4);
  CHECK(exit_code_of([] { PWPI_CHECK(false); }) == 1);
  CHECK(exit_code_of([] { throw std::runtime_error("boom"); }) == 1);
  CHECK(exit_code_of([] { throw std::bad_alloc(); }) == 1);
  CHECK(exit_code_of([] { throw 42; }) == 1);
}

TEST_CASE("CliApp runs the selected subcommand after parsing", "[unit]") {
  common::CliApp cli("tool", "test tool");
  int ran = 0;
  std::string name;
  std::uint64_t memory = 0;
  auto* sub = cli.add_command("go", "does it", [&] { ++ran; });
  sub->add_option("--name", name)->required();
  common::add_size_option(sub, "--memory", memory, "budget");
  cli.add_command("other", "does not", [&] { ran += 100; });

  CHECK(run_app(cli, {"tool", "go", "--name", "x", "--memory", "1.5G", "-v"}) == 0);
  CHECK(ran == 1);
  CHECK(name == "x");
  CHECK(memory == 1610612736ull);
  CHECK(common::log_level() == common::LogLevel::verbose);
  common::set_log_level(common::LogLevel::normal);
}

TEST_CASE("CliApp usage errors exit 2", "[unit]") {
  auto make = [](int& ran) {
    auto cli = std::make_unique<common::CliApp>("tool", "test tool");
    auto* sub = cli->add_command("go", "does it", [&] { ++ran; });
    static std::uint64_t memory = 0;
    common::add_size_option(sub, "--memory", memory, "budget");
    return cli;
  };
  int ran = 0;
  CHECK(run_app(*make(ran), {"tool"}) == 2);                                // a subcommand is required
  CHECK(run_app(*make(ran), {"tool", "nope"}) == 2);                        // unknown subcommand
  CHECK(run_app(*make(ran), {"tool", "go", "--bogus"}) == 2);               // unknown flag
  CHECK(run_app(*make(ran), {"tool", "go", "--memory", "lots"}) == 2);      // bad size
  CHECK(run_app(*make(ran), {"tool", "go", "--memory", "-1G"}) == 2);
  CHECK(ran == 0);
  CHECK(run_app(*make(ran), {"tool", "--version"}) == 0);
  CHECK(run_app(*make(ran), {"tool", "go", "--help"}) == 0);
  CHECK(ran == 0);
}

TEST_CASE("CliApp without subcommands runs its main function", "[unit]") {
  common::CliApp cli("tool", "test tool");
  int ran = 0, n = 0;
  cli.app().add_option("-n", n)->required();
  cli.set_main([&] { ran += n; });
  CHECK(run_app(cli, {"tool", "-n", "3"}) == 0);
  CHECK(ran == 3);
  CHECK(run_app(cli, {"tool"}) == 2);  // -n is required
  CHECK(ran == 3);
}

TEST_CASE("CliApp names a setting error's settings as the command's flags", "[unit]") {
  common::CliApp cli("tool", "test tool");
  std::uint64_t budget = 0;
  int ctx = 0;
  auto fail = [] {
    throw common::SettingError("memory-budget", "1.0 MiB is too small", "give more, or a shorter context", "ctx-size");
  };
  auto* go = cli.add_command("go", "has the flags", fail);
  common::add_size_option(go, "--memory-budget", budget, "budget");
  go->add_option("-c,--ctx-size", ctx, "context");
  cli.add_command("other", "has neither", fail);
  int code = 0;
  CHECK(stderr_of(cli, {"tool", "go"}, code) ==
        "error: --memory-budget 1.0 MiB is too small\nhint: give more, or a shorter context (-c)\n");
  CHECK(code == 2);
  CHECK(stderr_of(cli, {"tool", "other"}, code) ==
        "error: memory budget 1.0 MiB is too small\nhint: give more, or a shorter context (ctx size)\n");
  CHECK(code == 2);
}

TEST_CASE("the version string names program, version, build and CUDA", "[unit]") {
  std::string v = common::version_string("pipeweaver-cli");
  CHECK(v.rfind("pipeweaver-cli 0.", 0) == 0);
  CHECK(v.find("CUDA o") != std::string::npos);
}
