#include "common/errors.hpp"

#include <cstring>

namespace common {

std::string Where::format() const {
  std::string out = file;
  if (line >= 0) {
    out += ':' + std::to_string(line);
    if (column >= 0) out += ':' + std::to_string(column);
  }
  auto part = [&out](const std::string& s) {
    if (s.empty()) return;
    out += out.empty() ? "" : ": ";
    out += s;
  };
  if (byte_offset >= 0) part("byte " + std::to_string(byte_offset));
  part(item);
  part(pointer);
  return out;
}

Where Where::with_pointer(std::string p) const {
  Where w = *this;
  w.pointer = std::move(p);
  return w;
}

std::string SettingError::in_words(std::string setting) {
  for (char& c : setting)
    if (c == '-') c = ' ';
  return setting;
}

SettingError::SettingError(std::string setting, std::string text, std::string hint, std::string hint_setting)
    : UsageError(in_words(setting) + " " + text,
                 hint_setting.empty() ? hint : hint + " (" + in_words(hint_setting) + ")"),
      setting_(std::move(setting)),
      text_(std::move(text)),
      hint_text_(std::move(hint)),
      hint_setting_(std::move(hint_setting)) {}

static std::string join_where(const Where& where, const std::string& text) {
  std::string w = where.format();
  return w.empty() ? text : w + ": " + text;
}

InputError::InputError(Where where, std::string expected, std::string got, std::string hint)
    : std::runtime_error(join_where(where, "expected " + expected + ", got " + got)),
      where_(std::move(where)),
      expected_(std::move(expected)),
      got_(std::move(got)),
      hint_(std::move(hint)) {}

InputError::InputError(FreeForm, Where where, std::string text, std::string hint)
    : std::runtime_error(join_where(where, text)), where_(std::move(where)), hint_(std::move(hint)) {}

InputError InputError::message(Where where, std::string text, std::string hint) {
  return InputError(FreeForm{}, std::move(where), std::move(text), std::move(hint));
}

IoError::IoError(const std::string& path, const std::string& operation, int errno_value)
    : std::runtime_error(path + ": cannot " + operation + ": " + std::strerror(errno_value)),
      errno_(errno_value) {}

IoError::IoError(const std::string& path, const std::string& operation, const std::string& reason)
    : std::runtime_error(path + ": cannot " + operation + ": " + reason) {}

void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::string text = std::string("internal check failed: ") + expr + " at " + file + ":" +
                     std::to_string(line);
  if (!msg.empty()) text += " (" + msg + ")";
  throw InternalError(text);
}

}  // namespace common
