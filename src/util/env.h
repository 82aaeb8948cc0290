// Run-time switches read from the environment (SPARSEK_FLASH_BWD, SPARSEK_LSH_DECODE, ...): one
// parser, so that every switch treats unset and empty alike and refuses an unknown value with the
// same message.
#pragma once

#include <initializer_list>

namespace sk::util {

// The index in `choices` of the value of environment variable `name`; unset or empty gives 0 (the
// first choice is the default). Any other value throws sk::Error: "NAME must be a, b or c, got 'x'".
int env_choice(const char* name, std::initializer_list<const char*> choices);

}  // namespace sk::util
