// Small helpers shared by the test suites: the message of an expected sk::Error, and a fresh
// per-test temporary directory.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "util/check.h"

namespace sk::testing {

// The message of the sk::Error that fn throws ("" if none).
template <typename F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const ::sk::Error& e) {
    return e.what();
  }
  return "";
}

// An empty directory under the system temp dir, unique to this process and the running test.
inline std::filesystem::path fresh_test_dir(const std::string& prefix) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / (prefix + "_" + std::to_string(::getpid()) + "_" +
                                                    ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

}  // namespace sk::testing
