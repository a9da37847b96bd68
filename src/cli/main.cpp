// hlwq: one binary, one subcommand per job. Library code throws hlwq::Error; this is the only place that
// catches it, prints one `hlwq: error:` line and exits with the code of cli/options.h (README "Exit codes").
#include <algorithm>
#include <csignal>
#include <string>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"

int main(int argc, char** argv) {
  using namespace hlwq::cli;
  // A write past a file-size limit must be an error message, not a SIGXFSZ kill with a half-written output.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"hlwq: quantize, run and serve Mixture-of-Experts models on small GPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hlwq 0.1.0");
  const std::vector<Command> commands = {add_quantize(app), add_inspect(app), add_run(app), add_chat(app),
                                         add_eval(app), add_serve(app), add_synth(app), add_bench(app)};
  // llama.cpp's single-dash long name, which CLI11 cannot declare: -ngl is --n-gpu-layers.
  std::vector<std::string> args(argv + 1, argv + argc);
  for (std::string& s : args)
    if (s == "-ngl") s = "--n-gpu-layers";
    else if (s.rfind("-ngl=", 0) == 0) s = "--n-gpu-layers=" + s.substr(5);
  std::reverse(args.begin(), args.end());  // CLI11's vector form takes the arguments last first
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string where = "hlwq";
    for (const CLI::App* sub = &app; sub;) {  // the deepest subcommand named on the line, for the hint
      const CLI::App* next = nullptr;
      for (const CLI::App* s : sub->get_subcommands())
        if (s->parsed()) next = s;
      if (next) where += " " + next->get_name();
      sub = next;
    }
    std::fprintf(stderr, "hlwq: error: %s (see '%s --help')\n", e.what(), where.c_str());
    return kExitUsage;
  }
  try {
    for (const auto& cmd : commands)
      if (cmd.sub->parsed()) return cmd.run();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "hlwq: error: %s\n", e.what());
    return kExitUsage;
  } catch (const hlwq::Error& e) {
    std::fprintf(stderr, "hlwq: error: %s\n", e.what());
    return kExitFailure;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "hlwq: error: out of memory\n");
    return kExitFailure;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq: error: %s\n", e.what());
    return kExitFailure;
  }
  return kExitOk;
}
