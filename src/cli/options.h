// What every subcommand shares about its command line: validators that state the allowed range in words (and
// parse the text themselves, so "abc" is "not a number" rather than a range of 300 digits), the usage-error
// type, and the checks of paths named on the command line. Exit codes (README "Exit codes"):
//   0 success; 1 the work failed (a model, text or output problem found while running);
//   2 the command line is wrong (an option value, a path that is missing), found before anything runs;
//   130 interrupted by Ctrl-C.
#pragma once
#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "core/error.h"

namespace hlwq::cli {

constexpr int kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitInterrupted = 130;

// A command-line mistake found after parsing (e.g. a value that depends on the model): exit code 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

template <typename... Args>
[[noreturn]] void usage_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw UsageError(fmt::format(f, std::forward<Args>(args)...));
}

// Integer validators: "a whole number from 1 to 4096", "a whole number of at least 0"; `whole` takes the words
// of the error and the short description --help shows.
CLI::Validator whole(int64_t lo, int64_t hi, std::string words, std::string desc);
CLI::Validator whole_in(int64_t lo, int64_t hi);
CLI::Validator whole_at_least(int64_t lo);
// Real-number validator; an open lower bound excludes it: number_in(0, 1, true) is "greater than 0, at most 1".
CLI::Validator number_in(double lo, double hi, bool lo_open = false);

// The path names an existing directory (else a usage error) that holds config.json (else an Error).
void check_model_dir(const std::string& path, const char* what = "model directory");
// The path names an existing regular file; otherwise a usage error that says which.
void check_input_file(const std::string& path, const char* what);
// Reads a UTF-8 text file (at most `max_bytes`); a binary file is an error that blames the file.
std::string read_text_file(const std::string& path, const char* option, uint64_t max_bytes = uint64_t(1) << 30);

}  // namespace hlwq::cli
