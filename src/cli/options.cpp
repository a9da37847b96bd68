#include "cli/options.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "runtime/utf8_stream.h"

namespace hlwq::cli {
namespace fs = std::filesystem;

namespace {

std::string quote_value(const std::string& s) { return "'" + (s.size() > 40 ? s.substr(0, 40) + "..." : s) + "'"; }

}  // namespace

CLI::Validator whole(int64_t lo, int64_t hi, std::string words, std::string desc) {
  return CLI::Validator(
      [lo, hi, words](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || end != s.c_str() + s.size()) return quote_value(s) + " is not " + words;
        if (errno == ERANGE || v < lo || v > hi) return "got " + s + ", expected " + words;
        return {};
      },
      desc);
}

namespace {

std::string num(double x) { return fmt::format("{:g}", x); }

CLI::Validator real(double lo, double hi, bool lo_open, std::string words, std::string desc) {
  return CLI::Validator(
      [lo, hi, lo_open, words](std::string& s) -> std::string {
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || end != s.c_str() + s.size() || std::isnan(v)) return quote_value(s) + " is not a number";
        if (!std::isfinite(v) || v > hi || v < lo || (lo_open && v == lo)) return "got " + s + ", expected " + words;
        return {};
      },
      desc);
}

}  // namespace

CLI::Validator whole_in(int64_t lo, int64_t hi) {
  return whole(lo, hi, fmt::format("a whole number from {} to {}", lo, hi), fmt::format("{} to {}", lo, hi));
}
CLI::Validator whole_at_least(int64_t lo) {
  return whole(lo, INT64_MAX, fmt::format("a whole number of at least {}", lo), fmt::format("at least {}", lo));
}
CLI::Validator number_in(double lo, double hi, bool lo_open) {
  if (lo_open)
    return real(lo, hi, true, fmt::format("a number greater than {} and at most {}", num(lo), num(hi)),
                fmt::format("above {}, up to {}", num(lo), num(hi)));
  return real(lo, hi, false, fmt::format("a number from {} to {}", num(lo), num(hi)),
              fmt::format("{} to {}", num(lo), num(hi)));
}

void check_model_dir(const std::string& path, const char* what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) usage_fail("{} {} does not exist", what, path);
  if (!fs::is_directory(st)) usage_fail("{} {} is not a directory", what, path);
  // A directory that exists but holds no model is a problem of the model, not of the command line: exit code 1.
  HLWQ_CHECK(fs::exists(fs::path(path) / "config.json"), "{}: missing config.json (not a model directory)", path);
}

void check_input_file(const std::string& path, const char* what) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (!fs::exists(st)) usage_fail("{} {} does not exist", what, path);
  if (!fs::is_regular_file(st)) usage_fail("{} {} is not a regular file", what, path);
}

std::string read_text_file(const std::string& path, const char* option, uint64_t max_bytes) {
  check_input_file(path, option);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  HLWQ_CHECK(!ec, "{}: cannot read its size: {}", path, ec.message());
  HLWQ_CHECK(size <= max_bytes, "{} {}: {} bytes is larger than the {} bytes hlwq reads as text", option, path, size,
             max_bytes);
  std::ifstream f(path, std::ios::binary);
  HLWQ_CHECK(f.good(), "{} {}: cannot open it", option, path);
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  const size_t bad = utf8_first_invalid(text);
  HLWQ_CHECK(bad == text.size(), "{} {}: not UTF-8 text (invalid byte 0x{:02x} at offset {}); {} takes a text file",
             option, path, static_cast<unsigned char>(text[bad]), bad, option);
  const size_t nul = text.find('\0');
  HLWQ_CHECK(nul == std::string::npos, "{} {}: not text (a NUL byte at offset {}); {} takes a text file", option,
             path, nul, option);
  return text;
}

}  // namespace hlwq::cli
