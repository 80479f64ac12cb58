// Whole-file reads and crash-safe writes: outputs go to a temporary file beside the target
// and are renamed over it only once complete, so an error never leaves half a file.
#pragma once

#include <fstream>
#include <memory>
#include <string>
#include <string_view>

namespace common {

/// Reads a whole file; IoError names the path and the reason.
std::string read_file(const std::string& path);

/// An output file that appears under its final name only on commit(). Destroying it
/// uncommitted (an exception unwinding) removes the temporary, and so does SIGINT, SIGTERM or
/// SIGHUP arriving while it is open (the process then ends by that signal, as it would have):
/// an interrupted command leaves neither half a file nor its temporary. The path "-" writes
/// to stdout directly (nothing to rename).
class AtomicOutput {
 public:
  explicit AtomicOutput(std::string path, bool binary = false);
  ~AtomicOutput();
  AtomicOutput(const AtomicOutput&) = delete;
  AtomicOutput& operator=(const AtomicOutput&) = delete;

  std::ostream& stream();
  /// Flushes, syncs and renames over the final path; IoError on any failure.
  void commit();
  const std::string& path() const { return path_; }
  const std::string& temp_path() const { return temp_path_; }

 private:
  std::string path_, temp_path_;
  std::unique_ptr<std::ofstream> file_;
  int temp_slot_ = -1;  // where a signal handler finds temp_path_ (-1: not registered)
  bool committed_ = false;
};

/// Writes `data` to `path` atomically (temporary + rename).
void write_file_atomic(const std::string& path, std::string_view data);

}  // namespace common
