// Runs the built hlwq binary in a shell (so tests can use ulimit, redirections) and captures its output.
#pragma once
#include <string>

namespace hlwq::test {

struct CliResult {
  int exit_code = -1;
  std::string out;  // stdout and stderr together
};

// `args` is appended to the binary path verbatim; `prefix` runs before it in the same shell (e.g. "ulimit -f 64;").
CliResult run_hlwq(const std::string& args, const std::string& prefix = "");

}  // namespace hlwq::test
