#include "cli_run.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>

#include "test_paths.h"

namespace hlwq::test {

CliResult run_hlwq(const std::string& args, const std::string& prefix) {
  std::string script = prefix + " exec " + hlwq_binary().string() + " " + args;
  std::string quoted;  // single-quote the script for bash -c: ' becomes '\''
  for (char ch : script) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  const std::string cmd = "bash -c '" + quoted + "' 2>&1";
  CliResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  int st = pclose(p);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

}  // namespace hlwq::test
