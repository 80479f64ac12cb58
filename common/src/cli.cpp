#include "common/cli.hpp"

#include <cstdio>
#include <iostream>
#include <new>

#include "common/errors.hpp"
#include "common/log.hpp"
#include "common/units.hpp"
#include "common/version.hpp"

namespace common {

namespace {
int print_error(const std::string& message, const std::string& hint, ExitCode code) {
  std::cout.flush();
  log_line("error: " + message);
  if (!hint.empty()) log_line("hint: " + hint);
  return static_cast<int>(code);
}
// The flag of `app` that gives a setting, as the user most likely typed it: its short form
// where it has one ("-c"), else the long one ("--memory-budget"); the setting in words when
// the command has no such flag.
std::string flag_name(const CLI::App& app, const std::string& setting) {
  const CLI::Option* opt = app.get_option_no_throw("--" + setting);
  if (opt == nullptr) return SettingError::in_words(setting);
  if (!opt->get_snames().empty()) return "-" + opt->get_snames().front();
  return "--" + setting;
}
}  // namespace

std::string version_string(const std::string& program_name) {
  return program_name + " " + kVersion + " (git " + kGitCommit + ", " + kBuildType + ", CUDA " +
         (kCudaEnabled ? "on" : "off") + ")";
}

int run_guarded(const std::function<void()>& body) {
  try {
    body();
    return static_cast<int>(ExitCode::ok);
  } catch (const UsageError& e) {
    return print_error(e.what(), e.hint(), ExitCode::usage);
  } catch (const InputError& e) {
    return print_error(e.what(), e.hint(), ExitCode::bad_input);
  } catch (const IoError& e) {
    return print_error(e.what(), {}, ExitCode::io);
  } catch (const std::bad_alloc&) {
    return print_error("out of memory", "lower the sizes asked for, or the memory budget", ExitCode::internal);
  } catch (const InternalError& e) {
    return print_error(e.what(), "this is a bug; please report it with the command line", ExitCode::internal);
  } catch (const std::exception& e) {
    return print_error(std::string("internal: ") + e.what(), {}, ExitCode::internal);
  } catch (...) {
    return print_error("internal: unknown exception", {}, ExitCode::internal);
  }
}

CliApp::CliApp(std::string program_name, std::string description)
    : name_(std::move(program_name)), app_(std::move(description), name_) {
  app_.set_version_flag("--version", version_string(name_), "Print the version and exit");
  app_.add_flag("-v,--verbose", verbose_, "More log output on stderr");
  app_.add_flag("-q,--quiet", quiet_, "Only errors on stderr (no progress bar, no warnings)");
  app_.fallthrough();  // -v/-q also after the subcommand name
}

CLI::App* CliApp::add_command(const std::string& name, const std::string& description,
                              std::function<void()> run) {
  CLI::App* sub = app_.add_subcommand(name, description);
  sub->fallthrough();
  commands_.emplace_back(sub, std::move(run));
  return sub;
}

int CliApp::run(int argc, char** argv) {
  if (!commands_.empty()) app_.require_subcommand(1);
  try {
    app_.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app_.exit(e);  // --help, --version: printed on stdout, exit 0
  } catch (const CLI::ParseError& e) {
    std::string hint = "run '" + name_ + " --help' for usage";
    if (!app_.get_subcommands().empty())
      hint = "run '" + name_ + " " + app_.get_subcommands().front()->get_name() + " --help' for usage";
    std::string message = e.what();
    if (app_.get_subcommands().empty() && !commands_.empty()) {
      // CLI11 reports an unknown command word as a missing subcommand; name it instead.
      for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i];
        if (arg.empty() || arg[0] == '-') continue;
        std::string known;
        for (auto& command : commands_) known += (known.empty() ? "" : ", ") + command.first->get_name();
        message = "unknown command '" + arg + "'; expected one of: " + known;
        break;
      }
    }
    return print_error(message, hint, ExitCode::usage);
  }
  set_log_level(log_level_from_flags(quiet_, verbose_));
  CLI::App* selected = &app_;
  for (auto& command : commands_)
    if (command.first->parsed()) selected = command.first;
  return run_guarded([&] {
    try {
      if (main_) main_();
      for (auto& [sub, fn] : commands_)
        if (sub->parsed()) fn();
    } catch (const SettingError& e) {
      // Name the settings as this command's flags: the library did not know them.
      std::string hint = e.hint_text();
      if (!e.hint_setting().empty()) hint += " (" + flag_name(*selected, e.hint_setting()) + ")";
      throw UsageError(flag_name(*selected, e.setting()) + " " + e.text(), hint);
    }
  });
}

namespace {

// A size option: `set` gets the parsed bytes; a value that is not a size fails the parse.
CLI::Option* size_option(CLI::App* app, const std::string& name, std::function<void(std::uint64_t)> set,
                         const std::string& description) {
  CLI::Option* opt = app->add_option_function<std::string>(
      name, [set = std::move(set), name](const std::string& text) { set(parse_size_arg(text, name)); },
      description);
  opt->type_name("SIZE");
  opt->check([](const std::string& text) -> std::string {
    SizeParse r = try_parse_size(text);
    return r.bytes ? std::string()
                   : "expected a size such as 512M, 2GiB or 1.5G, got '" + text + "' (" + r.error + ")";
  });
  return opt;
}

}  // namespace

CLI::Option* add_size_option(CLI::App* app, const std::string& name, std::uint64_t& bytes,
                             const std::string& description) {
  return size_option(app, name, [&bytes](std::uint64_t b) { bytes = b; }, description);
}

CLI::Option* add_size_option(CLI::App* app, const std::string& name, std::optional<std::uint64_t>& bytes,
                             const std::string& description) {
  return size_option(app, name, [&bytes](std::uint64_t b) { bytes = b; }, description);
}

}  // namespace common
