#include "common/file_io.hpp"

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
