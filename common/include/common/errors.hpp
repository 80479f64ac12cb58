// Error types shared by both tools. Library code throws; executables convert at the
// boundary (common/cli.hpp) into `error: ...` on stderr and a distinct exit code.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

namespace common {

/// Process exit codes, the same for every executable of the project.
enum class ExitCode : int {
  ok = 0,
  internal = 1,   // a bug: a broken invariant or an unexpected exception
  usage = 2,      // bad command line
  bad_input = 3,  // an input file or value is malformed or inconsistent
  io = 4,         // the operating system refused a read or a write
};

/// Where in an input a problem lies. Every field is optional; format() prints the ones set,
/// e.g. "trace.jsonl:17: /samples/3/tokens" or "model.gguf: byte 4096".
struct Where {
  Where() = default;
  explicit Where(std::string file_path) : file(std::move(file_path)) {}

  std::string file;
  std::int64_t line = -1;         // 1-based line (JSON Lines record, text file)
  std::int64_t column = -1;       // 1-based column, with line
  std::string pointer;            // JSON pointer inside the document ("" = not set)
  std::int64_t byte_offset = -1;  // for binary files
  std::string item;               // a named item, e.g. "tensor blk.3.ffn_up.weight"

  std::string format() const;
  Where with_pointer(std::string p) const;
};

/// The one error type for malformed or inconsistent input. The message reads
/// "<where>: expected <expected>, got <got>" or "<where>: <message>".
class InputError : public std::runtime_error {
 public:
  InputError(Where where, std::string expected, std::string got, std::string hint = {});
  /// A free-form message, for problems that are not an expected/got pair.
  static InputError message(Where where, std::string text, std::string hint = {});

  const Where& where() const { return where_; }
  const std::string& expected() const { return expected_; }
  const std::string& got() const { return got_; }
  const std::string& hint() const { return hint_; }

 private:
  struct FreeForm {};
  InputError(FreeForm, Where where, std::string text, std::string hint);
  Where where_;
  std::string expected_, got_, hint_;
};

/// A bad command line (unknown value for a flag, conflicting options, ...).
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& what, std::string hint = {})
      : std::runtime_error(what), hint_(std::move(hint)) {}
  const std::string& hint() const { return hint_; }

 private:
  std::string hint_;
};

/// A bad value of a setting, raised by library code that does not know how the setting was
/// given. `setting` is its name as a command-line flag spells it, without the dashes
/// ("memory-budget"), `text` what follows it ("1.0 MiB is too small: ..."); the hint may
/// close by naming another setting to change (`hint_setting`, in parentheses). what() and
/// hint() name the settings in words ("memory budget 1.0 MiB ..."); the command-line
/// boundary names the command's flags instead ("--memory-budget 1.0 MiB ...", "(-c)").
class SettingError : public UsageError {
 public:
  SettingError(std::string setting, std::string text, std::string hint = {}, std::string hint_setting = {});
  const std::string& setting() const { return setting_; }
  const std::string& text() const { return text_; }
  const std::string& hint_text() const { return hint_text_; }  // the hint without the setting
  const std::string& hint_setting() const { return hint_setting_; }
  /// A setting in words: "memory-budget" -> "memory budget".
  static std::string in_words(std::string setting);

 private:
  std::string setting_, text_, hint_text_, hint_setting_;
};

/// An operating-system failure on a file: "<path>: cannot <operation>: <strerror>".
class IoError : public std::runtime_error {
 public:
  IoError(const std::string& path, const std::string& operation, int errno_value);
  IoError(const std::string& path, const std::string& operation, const std::string& reason);
  int errno_value() const { return errno_; }

 private:
  int errno_ = 0;
};

/// A broken invariant inside the program (exit code 1).
class InternalError : public std::logic_error {
 public:
  using std::logic_error::logic_error;
};

[[noreturn]] void check_failed(const char* expr, const char* file, int line, const std::string& msg);

}  // namespace common

/// Always-on invariant check (also in Release builds): throws common::InternalError naming
/// the expression and file:line. Use for bugs, never for bad input.
#define PWPI_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) [[unlikely]]                                               \
      ::common::check_failed(#cond, __FILE__, __LINE__, std::string());     \
  } while (0)
#define PWPI_CHECK_MSG(cond, msg)                                           \
  do {                                                                      \
    if (!(cond)) [[unlikely]]                                               \
      ::common::check_failed(#cond, __FILE__, __LINE__, (msg));             \
  } while (0)
