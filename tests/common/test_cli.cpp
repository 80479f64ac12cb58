#include "common/cli.hpp"

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

TEST_CASE("the version string names program, version, build and CUDA", "[unit]") {
  std::string v = common::version_string("pipeweaver-cli");
  CHECK(v.rfind("pipeweaver-cli 0.", 0) == 0);
  CHECK(v.find("CUDA o") != std::string::npos);
}
