// hlwq: one binary, one subcommand per job. Library code throws hlwq::Error; this is the only place that
// catches it, prints one clear line and exits non-zero.
#include <csignal>
#include <cstdio>
#include <vector>

#include "cli/commands.h"
#include "core/error.h"

int main(int argc, char** argv) {
  // A write past a file-size limit must be an error message, not a SIGXFSZ kill with a half-written output.
  std::signal(SIGXFSZ, SIG_IGN);
  CLI::App app{"hlwq: quantize, run and serve Mixture-of-Experts models on small GPUs"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "hlwq 0.1.0");
  const std::vector<hlwq::cli::Command> commands = {hlwq::cli::add_quantize(app), hlwq::cli::add_inspect(app),
                                                    hlwq::cli::add_run(app),      hlwq::cli::add_chat(app),
                                                    hlwq::cli::add_eval(app)};
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (const auto& cmd : commands)
      if (cmd.sub->parsed()) return cmd.run();
  } catch (const hlwq::Error& e) {
    std::fprintf(stderr, "hlwq: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "hlwq: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
