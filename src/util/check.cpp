// Out-of-line part of SK_CHECK (src/util/check.h): formats and throws sk::Error.
#include "util/check.h"

#include <cstring>

namespace sk::detail {

void throw_error(const char* cond, const char* file, int line, const std::string& msg) {
  const char* base = std::strrchr(file, '/');
  std::ostringstream os;
  os << msg << " [";
  if (cond) os << "check '" << cond << "' failed at ";
  os << (base ? base + 1 : file) << ":" << line << "]";
  throw Error(os.str());
}

}  // namespace sk::detail
