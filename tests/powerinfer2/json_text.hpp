// Generated text as `--json` output holds it, for comparing with a plain run's bytes: the
// CLI dumps with nlohmann's `replace` handler, which turns invalid UTF-8 (a byte token may
// split a character) into U+FFFD.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

inline std::string as_json_text(const std::string& raw) {
  return nlohmann::json::parse(nlohmann::json(raw).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}
