// ScopedEnv: sets (or unsets) one environment variable for the object's life and restores the
// caller's value after; for tests of code that reads a switch from the environment at each call
// (SPARSEK_FLASH_BWD, SPARSEK_LSH_DECODE).
#pragma once

#include <cstdlib>
#include <string>

namespace sk::testing {

class ScopedEnv {
 public:
  // value nullptr: unset.
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* e = std::getenv(name)) had_ = true, old_ = e;
    if (value) setenv(name, value, 1);
    else unsetenv(name);
  }
  ~ScopedEnv() {
    if (had_) setenv(name_.c_str(), old_.c_str(), 1);
    else unsetenv(name_.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  bool had_ = false;
  std::string old_;
};

}  // namespace sk::testing
