// Errors: library code throws hlwq::Error with a message that names the file, tensor, expected and actual
// values; only main() catches, prints one line and exits non-zero. HLWQ_CHECK keeps call sites short.
#pragma once
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace hlwq {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace hlwq

// HLWQ_CHECK(cond, "fmt {}", args...): throw hlwq::Error with the formatted message when cond is false.
#define HLWQ_CHECK(cond, ...)            \
  do {                                   \
    if (!(cond)) ::hlwq::fail(__VA_ARGS__); \
  } while (0)
