// env_choice (env.h).
#include "util/env.h"

#include <cstdlib>
#include <cstring>
#include <string>

#include "util/check.h"

namespace sk::util {

int env_choice(const char* name, std::initializer_list<const char*> choices) {
  SK_CHECK(choices.size() > 0, "env_choice: ", name, " has no choices");
  const char* value = std::getenv(name);
  if (!value || !*value) return 0;
  int i = 0;
  std::string listed;
  for (const char* c : choices) {
    if (std::strcmp(value, c) == 0) return i;
    listed += (i == 0 ? "" : i + 1 == static_cast<int>(choices.size()) ? " or " : ", ") + std::string(c);
    ++i;
  }
  SK_FAIL(name, " must be ", listed, ", got '", value, "'");
}

}  // namespace sk::util
