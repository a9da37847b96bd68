// Paths the tests need: the repository (bundled demo model, test data), the shared fixtures beside the
// checkout (present in CI, absent in a fresh clone), a scratch directory, and the built hlwq binary.
#pragma once
#include <filesystem>
#include <string>

namespace hlwq::test {

std::filesystem::path source_dir();   // repository root (or $HLWQ_SOURCE)
std::filesystem::path shared_dir();   // ../shared (or $HLWQ_SHARED)
std::filesystem::path binary_dir();   // CMake build directory (or $HLWQ_BINARY)
std::filesystem::path hlwq_binary();  // build/hlwq
// A fresh empty directory under the build tree, unique per test process; removed when the process exits
// after its tests passed, kept (and named on stderr) when one failed.
std::filesystem::path scratch_dir(const std::string& name);
// True when ../shared/fixtures/<rel> exists; otherwise the caller should GTEST_SKIP() with shared_skip_message().
bool shared_has(const std::string& rel);
std::string shared_skip_message(const std::string& rel);

}  // namespace hlwq::test

// Skip the current test loudly when a ../shared fixture is missing (fresh clone without ../shared).
#define HLWQ_REQUIRE_SHARED(rel)                                                    \
  do {                                                                              \
    if (!::hlwq::test::shared_has(rel)) GTEST_SKIP() << ::hlwq::test::shared_skip_message(rel); \
  } while (0)
