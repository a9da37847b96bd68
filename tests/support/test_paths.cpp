#include "test_paths.h"

#include <cstdlib>
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

fs::path scratch_dir(const std::string& name) {
  fs::path p = binary_dir() / "test-scratch" / (name + "-" + std::to_string(getpid()));
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
