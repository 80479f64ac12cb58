#include "common/file_io.hpp"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "common/errors.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;

namespace {
std::size_t entries(const fs::path& dir) {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}
}  // namespace

TEST_CASE("AtomicOutput appears under its name only on commit", "[unit]") {
  testing::TempDir dir;
  auto path = (dir / "out.json").string();
  {
    common::AtomicOutput out(path);
    out.stream() << "hello";
    CHECK_FALSE(fs::exists(path));
    CHECK(fs::exists(out.temp_path()));
    out.commit();
  }
  CHECK(common::read_file(path) == "hello");
  CHECK(entries(dir.path()) == 1);
  auto perms = fs::status(path).permissions();
  CHECK((perms & fs::perms::owner_read) != fs::perms::none);
}

TEST_CASE("an error before commit leaves the old file untouched and no temporary", "[unit]") {
  testing::TempDir dir;
  auto path = (dir / "out.txt").string();
  common::write_file_atomic(path, "old contents");
  try {
    common::AtomicOutput out(path);
    out.stream() << "half a fi";
    throw std::runtime_error("failure while writing");
  } catch (const std::runtime_error&) {
  }
  CHECK(common::read_file(path) == "old contents");
  CHECK(entries(dir.path()) == 1);
}

TEST_CASE("AtomicOutput into a missing directory is an IoError naming the path", "[unit]") {
  try {
    common::AtomicOutput out("/nonexistent-dir/out.txt");
    FAIL("no throw");
  } catch (const common::IoError& e) {
    CHECK(std::string(e.what()).rfind("/nonexistent-dir/out.txt: cannot create a temporary file beside it:", 0) == 0);
  }
}

TEST_CASE("read_file reads binary data whole and rejects directories", "[unit]") {
  testing::TempDir dir;
  std::string data(200000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  common::write_file_atomic((dir / "b.bin").string(), data);
  CHECK(common::read_file((dir / "b.bin").string()) == data);
  CHECK_THROWS_AS(common::read_file(dir.path().string()), common::IoError);
  CHECK_THROWS_AS(common::read_file((dir / "missing").string()), common::IoError);
}

namespace {
// A child that opens an AtomicOutput over `path`, writes into it, tells the parent through a
// pipe and waits; the parent sends `sig`. Returns the child's wait status.
int interrupted_output(const std::string& path, int sig) {
  int ready[2];
  REQUIRE(::pipe(ready) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(ready[0]);
    for (int s : {SIGINT, SIGTERM, SIGHUP}) ::signal(s, SIG_DFL);  // as a program starts (not Catch2's)
    common::AtomicOutput out(path);
    out.stream() << std::string(100000, 'x') << std::flush;
    const char c = 1;
    if (::write(ready[1], &c, 1) != 1) ::_exit(3);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char c = 0;
  REQUIRE(::read(ready[0], &c, 1) == 1);
  ::close(ready[0]);
  // The temporary is there while the child writes.
  bool temp_seen = false;
  for (const auto& e : fs::directory_iterator(fs::path(path).parent_path()))
    temp_seen |= e.path().filename().string().rfind(fs::path(path).filename().string() + ".tmp.", 0) == 0;
  CHECK(temp_seen);
  REQUIRE(::kill(pid, sig) == 0);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return status;
}
}  // namespace

TEST_CASE("SIGINT, SIGTERM or SIGHUP while writing leave the old file and no temporary", "[unit]") {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    CAPTURE(sig);
    testing::TempDir dir;
    const std::string path = (dir / "out.gguf").string();
    common::write_file_atomic(path, "old contents");
    const int status = interrupted_output(path, sig);
    // The process still ends by the signal (a shell sees 128 + sig), after the cleanup.
    CHECK(WIFSIGNALED(status));
    if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == sig);
    CHECK(common::read_file(path) == "old contents");
    CHECK(entries(dir.path()) == 1);
  }
  // With no file there before, none is left.
  testing::TempDir dir;
  const int status = interrupted_output((dir / "new.json").string(), SIGTERM);
  CHECK(WIFSIGNALED(status));
  CHECK(entries(dir.path()) == 0);
}
