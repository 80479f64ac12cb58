// Helpers shared by the pipeweaver spec tests.
#pragma once

#include <exception>
#include <filesystem>
#include <string>

#include "test_support.hpp"

namespace pwtest {

/// The message of the exception `fn` throws, or "(no error)".
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

inline std::string config(const std::string& relative) {
  return (testing::source_dir() / "configs" / relative).string();
}

}  // namespace pwtest
