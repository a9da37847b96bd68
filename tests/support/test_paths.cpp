#include "test_paths.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstdio>
#include <unistd.h>

namespace hlwq::test {
namespace fs = std::filesystem;

// The environment may move the trees (test binaries copied to another machine, e.g. the GPU host).
fs::path source_dir() {
  if (const char* env = std::getenv("HLWQ_SOURCE")) return env;
  return HLWQ_SOURCE_DIR;
}
fs::path binary_dir() {
  if (const char* env = std::getenv("HLWQ_BINARY")) return env;
  return HLWQ_BINARY_DIR;
}
fs::path hlwq_binary() { return binary_dir() / "hlwq"; }

fs::path shared_dir() {
  if (const char* env = std::getenv("HLWQ_SHARED")) return env;
  return HLWQ_SHARED_DIR;
}

namespace {
std::string pid_suffix() { return "-" + std::to_string(getpid()); }

// Runs at exit: the scratch directories of a passing test program go (a CI run leaves gigabytes of models
// otherwise); a failing one keeps them for a look and says where.
void remove_scratch_if_passed() {
  const fs::path root = binary_dir() / "test-scratch";
  const std::string suffix = pid_suffix();
  const bool passed = ::testing::UnitTest::GetInstance()->Passed();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    const std::string n = entry.path().filename().string();
    if (n.size() <= suffix.size() || n.compare(n.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    if (passed) {
      fs::remove_all(entry.path(), ec);
    } else {
      std::fprintf(stderr, "kept the failed test's scratch directory %s\n", entry.path().c_str());
    }
  }
}
}  // namespace

fs::path scratch_dir(const std::string& name) {
  static const bool cleanup_registered = std::atexit(remove_scratch_if_passed) == 0;
  (void)cleanup_registered;
  fs::path p = binary_dir() / "test-scratch" / (name + pid_suffix());
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

bool shared_has(const std::string& rel) { return fs::exists(shared_dir() / "fixtures" / rel); }

std::string shared_skip_message(const std::string& rel) {
  return "SKIPPED LOUDLY: shared fixture " + (shared_dir() / "fixtures" / rel).string() +
         " is absent (fresh clone without ../shared); this test runs in CI";
}

}  // namespace hlwq::test
