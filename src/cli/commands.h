// Subcommand registration: each cmd_*.cpp adds its subcommand to the CLI11 app and returns the function that
// runs it once parsing succeeded. main() owns the app and turns hlwq::Error into one line and an exit code (cli/options.h).
#pragma once
#include <functional>

#include <CLI/CLI.hpp>

namespace hlwq::cli {

using Runner = std::function<int()>;
struct Command {
  CLI::App* sub;
  Runner run;
};

Command add_quantize(CLI::App& app);
Command add_inspect(CLI::App& app);
Command add_run(CLI::App& app);
Command add_chat(CLI::App& app);
Command add_eval(CLI::App& app);
Command add_serve(CLI::App& app);
Command add_synth(CLI::App& app);
Command add_bench(CLI::App& app);

// "5GB", "500MB", "1.5GiB", "123" (bytes) -> bytes; throws hlwq::Error on anything else.
uint64_t parse_size(const std::string& s);
// The value of a size option: anything parse_size refuses (an empty value among them) is a usage error naming the
// option and the value, "--max-shard-size 5XB: size '5XB': unknown unit 'XB'".
uint64_t parse_size_option(const std::string& value, const char* option);

}  // namespace hlwq::cli
