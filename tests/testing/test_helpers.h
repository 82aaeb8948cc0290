// Small helpers shared by the test suites: the message of an expected sk::Error, and a fresh
// per-test temporary directory.
#pragma once
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <set>
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

// "Suite.name" of every test registered in this binary (for coverage tests over the op table).
inline std::set<std::string> registered_test_names() {
  std::set<std::string> names;
  const ::testing::UnitTest* ut = ::testing::UnitTest::GetInstance();
  for (int i = 0; i < ut->total_test_suite_count(); ++i) {
    const ::testing::TestSuite* s = ut->GetTestSuite(i);
    for (int j = 0; j < s->total_test_count(); ++j) names.insert(std::string(s->name()) + "." + s->GetTestInfo(j)->name());
  }
  return names;
}

}  // namespace sk::testing
