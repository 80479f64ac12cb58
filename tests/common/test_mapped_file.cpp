#include "common/mapped_file.hpp"

#include <cerrno>
#include <filesystem>
#include <string>
#include <utility>

#include "common/errors.hpp"
#include "common/file_io.hpp"
#include "test_support.hpp"

TEST_CASE("MappedFile maps a whole file read-only", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "data.bin").string();
  std::string bytes = "GGUF";
  for (int i = 0; i < 5000; ++i) bytes += static_cast<char>(i * 7);  // more than a page
  common::write_file_atomic(path, bytes);
  const common::MappedFile m(path);
  CHECK(m.path() == path);
  REQUIRE(m.size() == bytes.size());
  REQUIRE(m.data() != nullptr);
  CHECK(std::string(reinterpret_cast<const char*>(m.data()), m.bytes().size()) == bytes);
}

TEST_CASE("MappedFile of an empty file has no bytes", "[unit]") {
  testing::TempDir dir;
  const std::string path = (dir / "empty").string();
  common::write_file_atomic(path, "");
  const common::MappedFile m(path);
  CHECK(m.size() == 0);
  CHECK(m.data() == nullptr);
  CHECK(m.bytes().empty());
}

TEST_CASE("MappedFile moves the mapping, leaving the source empty", "[unit]") {
  testing::TempDir dir;
  const std::string a_path = (dir / "a").string(), b_path = (dir / "b").string();
  common::write_file_atomic(a_path, "first");
  common::write_file_atomic(b_path, "second file");
  common::MappedFile a(a_path);
  const std::uint8_t* a_data = a.data();
  common::MappedFile moved(std::move(a));
  CHECK(moved.data() == a_data);
  CHECK(moved.size() == 5);
  CHECK(a.data() == nullptr);  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(a.size() == 0);
  common::MappedFile b(b_path);
  moved = std::move(b);  // unmaps "first"
  CHECK(moved.path() == b_path);
  CHECK(std::string(reinterpret_cast<const char*>(moved.data()), moved.size()) == "second file");
}

TEST_CASE("MappedFile errors name the file and the reason", "[unit]") {
  testing::TempDir dir;
  const std::string missing = (dir / "missing.gguf").string();
  try {
    common::MappedFile m(missing);
    FAIL("no error for a missing file");
  } catch (const common::IoError& e) {
    CHECK(e.errno_value() == ENOENT);
    CHECK(std::string(e.what()) == missing + ": cannot open for reading: No such file or directory");
  }
  try {
    common::MappedFile m(dir.path().string());
    FAIL("no error for a directory");
  } catch (const common::IoError& e) {
    CHECK(std::string(e.what()) == dir.path().string() + ": cannot map: it is a directory");
  }
}
