// Helpers shared by the test executables.
#pragma once

#include <filesystem>
#include <string>

#include <catch2/catch.hpp>

namespace testing {

/// Skips the current test visibly. Under CTest (which sets PWPI_TEST_SKIP_CODE) the process
/// exits with that code and CTest reports the test as skipped, with the reason in its
/// output; run by hand, Catch2 prints the reason as a warning and the test returns.
[[noreturn]] void skip_process(const std::string& reason);
bool skip_exits_process();

/// ../shared beside the checkout (or $PWPI_SHARED_DIR); empty if absent.
std::filesystem::path shared_dir();

/// The repository root and the build directory.
std::filesystem::path source_dir();
std::filesystem::path binary_dir();

/// A fresh empty directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

/// Writes a file (non-atomic; for test inputs).
void write_text(const std::filesystem::path& path, const std::string& text);

/// Runs a shell command, capturing stdout and stderr separately.
struct CommandResult {
  int exit_code = -1;
  std::string out, err;
};
CommandResult run_command(const std::string& command);

/// `s` in single quotes for the shell (embedded quotes escaped).
std::string shell_quote(const std::string& s);
/// Runs `executable` (quoted) followed by `args` (already shell syntax).
CommandResult run_cli(const std::string& executable, const std::string& args);

}  // namespace testing

#define PWPI_SKIP(reason)                                   \
  do {                                                      \
    if (::testing::skip_exits_process())                    \
      ::testing::skip_process(reason);                      \
    WARN("SKIPPED: " << (reason));                          \
    return;                                                 \
  } while (0)
