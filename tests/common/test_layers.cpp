// The layer order of both tools, read from the sources' #include lines. A source file under
// <tool>/src/<folder>/ may include its own folder, a folder of a strictly lower layer, and
// common/; files outside src/ (main.cpp, cmd_*.cpp) are the command-line layer and may
// include any layer of their own tool. common/ includes only common/. A folder that is not in
// the table fails too, so a new layer must be placed in the order on purpose.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include <unistd.h>

#include "test_support.hpp"

namespace {

namespace fs = std::filesystem;

// Folder -> layer rank; two folders of one rank may not include each other.
struct Tool {
  std::string dir;                   // relative to the source root
  std::map<std::string, int> ranks;  // folder under src/ -> rank
};

const std::vector<Tool>& tools() {
  static const std::vector<Tool> t = {
      {"powerinfer2-cli",
       {{"io", 1}, {"ops", 2}, {"model", 3}, {"sparse", 4}, {"engine", 5}, {"prep", 6}}},
      {"pipeweaver-cli",
       {{"spec", 1}, {"schedule", 1}, {"cost", 2}, {"semu", 3}, {"search", 4}, {"export", 4}}},
  };
  return t;
}

constexpr int kCommon = 0;
constexpr int kCli = 1000;

bool is_source(const fs::path& p) {
  const std::string e = p.extension().string();
  return e == ".hpp" || e == ".cpp" || e == ".cu" || e == ".cuh" || e == ".h";
}

// The quoted includes of a file, with their line numbers.
std::vector<std::pair<int, std::string>> quoted_includes(const fs::path& file) {
  static const std::regex re(R"(^\s*#\s*include\s*\"([^\"]+)\")");
  std::vector<std::pair<int, std::string>> out;
  std::ifstream in(file);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    std::smatch m;
    if (std::regex_search(line, m, re)) out.emplace_back(n, m[1].str());
  }
  return out;
}

std::string first_component(const std::string& path) {
  const auto slash = path.find('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}

// Every include of `file` (in layer `from`, folder `from_folder`) against the order; one line
// per violation.
void check_file(const fs::path& root, const fs::path& file, const Tool* tool, int from,
                const std::string& from_folder, std::vector<std::string>& bad) {
  for (const auto& [line, inc] : quoted_includes(file)) {
    const std::string where = fs::relative(file, root).string() + ":" + std::to_string(line) + ": \"" + inc + "\": ";
    const std::string folder = first_component(inc);
    if (folder.empty()) {
      // A file beside this one (e.g. "commands.hpp" in the command-line layer).
      if (!fs::exists(file.parent_path() / inc)) bad.push_back(where + "not a layer folder and not beside the file");
      continue;
    }
    if (folder == "common") continue;
    if (tool == nullptr) {
      bad.push_back(where + "common/ includes only common/");
      continue;
    }
    const auto it = tool->ranks.find(folder);
    if (it == tool->ranks.end()) {
      bad.push_back(where + "folder '" + folder + "' is not a layer of " + tool->dir);
      continue;
    }
    if (folder == from_folder) continue;
    if (it->second >= from) {
      bad.push_back(where + (it->second == from ? "sideways" : "upwards") + " from " +
                    (from_folder.empty() ? std::string("the command line") : from_folder) + " to " + folder);
    }
  }
}

std::vector<std::string> violations(const fs::path& root) {
  std::vector<std::string> bad;
  for (const Tool& tool : tools()) {
    const fs::path top = root / tool.dir;
    REQUIRE(fs::is_directory(top / "src"));
    std::set<std::string> seen;
    for (const auto& e : fs::recursive_directory_iterator(top)) {
      if (!e.is_regular_file() || !is_source(e.path())) continue;
      const fs::path rel = fs::relative(e.path(), top);
      if (rel.begin()->string() != "src") {
        check_file(root, e.path(), &tool, kCli, "", bad);
        continue;
      }
      const std::string folder = std::next(rel.begin())->string();
      const auto it = tool.ranks.find(folder);
      if (it == tool.ranks.end()) {
        bad.push_back(fs::relative(e.path(), root).string() + ": folder '" + folder + "' is not in the layer table");
        continue;
      }
      seen.insert(folder);
      check_file(root, e.path(), &tool, it->second, folder, bad);
    }
    for (const auto& [folder, rank] : tool.ranks) {
      if (!seen.count(folder)) bad.push_back(tool.dir + "/src/" + folder + ": a layer of the table holds no source");
    }
  }
  for (const auto& e : fs::recursive_directory_iterator(root / "common")) {
    if (e.is_regular_file() && is_source(e.path())) check_file(root, e.path(), nullptr, kCommon, "common", bad);
  }
  std::sort(bad.begin(), bad.end());
  return bad;
}

}  // namespace

TEST_CASE("every #include of both tools follows the layer order", "[unit]") {
  const std::vector<std::string> bad = violations(PWPI_SOURCE_DIR);
  for (const std::string& b : bad) UNSCOPED_INFO(b);
  CHECK(bad.empty());
}

TEST_CASE("the layer check sees an include that runs upwards", "[unit]") {
  // A file of the lowest layer that includes the highest one, in a scratch copy of the table.
  const fs::path dir = fs::temp_directory_path() / ("pwpi-layers-" + std::to_string(::getpid()));
  fs::create_directories(dir / "src" / "io");
  {
    std::ofstream(dir / "src" / "io" / "a.hpp") << "#pragma once\n#include \"prep/b.hpp\"\n#include \"common/errors.hpp\"\n";
    std::ofstream(dir / "cmd_x.cpp") << "#include \"io/a.hpp\"\n";
  }
  const Tool tool{"x", {{"io", 1}, {"prep", 6}}};
  std::vector<std::string> bad;
  check_file(dir, dir / "src" / "io" / "a.hpp", &tool, 1, "io", bad);
  check_file(dir, dir / "cmd_x.cpp", &tool, kCli, "", bad);
  fs::remove_all(dir);
  REQUIRE(bad.size() == 1);
  CHECK(bad[0].find("upwards from io to prep") != std::string::npos);
}
