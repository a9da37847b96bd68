// Reading chat input lines: on a terminal through libedit (line editing, history with the arrow keys, the
// terminal restored on exit), elsewhere (a pipe, a file) plain lines from stdin. A Ctrl-C while waiting for a line
// is reported as such (needs an InterruptScope, whose handler makes the read return).
#pragma once
#include <memory>
#include <string>

namespace hlwq::cli {

class LineReader {
 public:
  enum class Status { line, end_of_input, interrupted };
  explicit LineReader(std::string prompt);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // Shows the prompt and reads one line (without its newline) into `line`.
  Status read(std::string& line);
  // Adds a line to the history (the up arrow brings it back).
  void remember(const std::string& line);
  bool interactive() const { return edit_ != nullptr; }

  struct Editor;  // libedit's handles (opaque)

 private:
  std::string prompt_;
  std::unique_ptr<Editor> edit_;  // null when stdin is not a terminal
};

}  // namespace hlwq::cli
