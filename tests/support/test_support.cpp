#include "test_support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "common/file_io.hpp"

namespace testing {

bool skip_exits_process() { return std::getenv("PWPI_TEST_SKIP_CODE") != nullptr; }

void skip_process(const std::string& reason) {
  std::cout << "SKIPPED: " << reason << std::endl;
  std::_Exit(std::atoi(std::getenv("PWPI_TEST_SKIP_CODE")));
}

std::filesystem::path source_dir() { return PWPI_SOURCE_DIR; }
std::filesystem::path binary_dir() { return PWPI_BINARY_DIR; }

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("PWPI_SHARED_DIR")) return env;
  std::filesystem::path p = source_dir().parent_path() / "shared";
  return std::filesystem::is_directory(p) ? p : std::filesystem::path();
}

TempDir::TempDir() {
  static std::atomic<int> counter{0};
  auto base = std::filesystem::temp_directory_path();
  for (;;) {
    path_ = base / ("pwpi-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    if (std::filesystem::create_directory(path_)) break;
  }
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
  REQUIRE(f.good());
}

CommandResult run_command(const std::string& command) {
  TempDir dir;
  std::string full = "(" + command + ") >" + (dir / "out").string() + " 2>" + (dir / "err").string();
  int status = std::system(full.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = common::read_file((dir / "out").string());
  r.err = common::read_file((dir / "err").string());
  return r;
}

std::string shell_quote(const std::string& s) {
  std::string out(1, '\'');
  for (char c : s) {
    if (c == '\'') out.append("'\\''");
    else out.push_back(c);
  }
  out.push_back('\'');
  return out;
}

CommandResult run_cli(const std::string& executable, const std::string& args) {
  std::string command = shell_quote(executable);
  command.append(" ").append(args);
  return run_command(command);
}

}  // namespace testing
