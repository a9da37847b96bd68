// Shared helpers of the libFuzzer targets: a per-process scratch file (the readers under test take paths, as
// hlwq does with a model directory) and the one rule every target checks: bad input may only ever surface as
// hlwq::Error. Anything else (another exception type, a crash, a sanitizer report, a leak, a hang) is a finding.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "core/error.h"

namespace hlwq::fuzz {

// A directory of this process's own under $TMPDIR (or /tmp), created once.
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    const char* t = std::getenv("TMPDIR");
    std::filesystem::path d = std::filesystem::path(t && *t ? t : "/tmp") / ("hlwq-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}

// Runs f(); hlwq::Error is the expected outcome for bad input and is swallowed. Other exceptions propagate,
// which libFuzzer reports as a crash (uncaught exception -> abort).
template <class F>
void expect_only_hlwq_errors(F&& f) {
  try {
    f();
  } catch (const hlwq::Error&) {
  }
}

}  // namespace hlwq::fuzz
