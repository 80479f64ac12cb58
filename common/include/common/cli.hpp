// The boundary of every executable: command-line parsing with CLI11, the global -v/-q and
// --version flags, one registered function per subcommand (or one main function), and the
// conversion of exceptions into `error: ...` on stderr plus a distinct exit code
// (common::ExitCode).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>

namespace common {

/// "<name> <version> (git <hash>, <build type>, CUDA on|off)".
std::string version_string(const std::string& program_name);

class CliApp {
 public:
  CliApp(std::string program_name, std::string description);

  CLI::App& app() { return app_; }
  /// Registers a subcommand; `run` is called when it is selected, after parsing succeeded
  /// and the log level was set. Options are added to the returned App.
  CLI::App* add_command(const std::string& name, const std::string& description,
                        std::function<void()> run);
  /// For a program without subcommands: `run` is called after parsing succeeded and the
  /// log level was set, its options added to app().
  void set_main(std::function<void()> run) { main_ = std::move(run); }
  /// Parses, runs the selected subcommand (or the main function), and returns the process
  /// exit code.
  int run(int argc, char** argv);

 private:
  std::string name_;
  CLI::App app_;
  bool quiet_ = false;
  int verbose_ = 0;
  std::vector<std::pair<CLI::App*, std::function<void()>>> commands_;
  std::function<void()> main_;
};

/// Runs `body`, converting any exception into a printed error and an exit code.
int run_guarded(const std::function<void()>& body);

/// Adds an option taking a human size ("2GiB", "512M"); bad values are usage errors.
CLI::Option* add_size_option(CLI::App* app, const std::string& name, std::uint64_t& bytes,
                             const std::string& description);
/// The same, set only when the option is given.
CLI::Option* add_size_option(CLI::App* app, const std::string& name, std::optional<std::uint64_t>& bytes,
                             const std::string& description);

}  // namespace common
