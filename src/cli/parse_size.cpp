#include <cmath>
#include <cstdlib>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"

namespace hlwq::cli {

uint64_t parse_size(const std::string& s) {
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  HLWQ_CHECK(end != s.c_str() && v > 0 && std::isfinite(v), "size '{}' is not a positive number with a unit", s);
  const std::string unit = end;
  double mul = 0;
  if (unit.empty() || unit == "B") mul = 1;
  else if (unit == "kB" || unit == "KB") mul = 1e3;
  else if (unit == "MB") mul = 1e6;
  else if (unit == "GB") mul = 1e9;
  else if (unit == "KiB") mul = 1024.0;
  else if (unit == "MiB") mul = 1024.0 * 1024;
  else if (unit == "GiB") mul = 1024.0 * 1024 * 1024;
  else fail("size '{}': unknown unit '{}' (B, kB, MB, GB, KiB, MiB, GiB)", s, unit);
  // converting a double at or above 2^64 to uint64_t is undefined, and callers hold sizes as int64_t
  HLWQ_CHECK(v * mul < 0x1p62, "size '{}' is too large (at most 4 EiB)", s);
  return uint64_t(v * mul);
}

uint64_t parse_size_option(const std::string& value, const char* option) {
  try {
    return parse_size(value);
  } catch (const Error& e) {
    usage_fail("{} {}: {}", option, value, e.what());
  }
}

}  // namespace hlwq::cli
