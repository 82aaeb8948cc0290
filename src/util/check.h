// Error handling: sk::Error and the SK_CHECK macro.
//
// Every check at an API boundary throws sk::Error with the failing condition, file:line and a
// message that names the bad value and what was expected, e.g.
//   "linear: input (4, 17) last dim 17 does not match weight (8, 16) in_features 16".
// Tests catch sk::Error; the CLI prints what() and exits with status 2.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace sk {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {
template <typename... Args>
std::string concat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}
[[noreturn]] void throw_error(const char* cond, const char* file, int line, const std::string& msg);
}  // namespace detail

}  // namespace sk

// SK_CHECK(cond, parts...): throws sk::Error("<parts...> [check 'cond' failed at file:line]").
#define SK_CHECK(cond, ...)                                                                   \
  do {                                                                                        \
    if (!(cond)) ::sk::detail::throw_error(#cond, __FILE__, __LINE__,                          \
                                           ::sk::detail::concat(__VA_ARGS__));                 \
  } while (0)

#define SK_FAIL(...) ::sk::detail::throw_error(nullptr, __FILE__, __LINE__, ::sk::detail::concat(__VA_ARGS__))
