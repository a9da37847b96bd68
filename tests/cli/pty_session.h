// Runs the hlwq binary on a pseudo-terminal (forkpty), as a person at a terminal would: the test sends keys
// (text, "\r", Ctrl-C as "\x03", arrows as escape sequences) and waits for text on the screen.
#pragma once
#include <sys/types.h>
#include <termios.h>

#include <string>

namespace hlwq::test {

class PtySession {
 public:
  explicit PtySession(const std::string& args);  // appended to the binary path, split on spaces
  ~PtySession();
  // Waits until `text` appears in the output after the current mark; moves the mark past it. False on timeout.
  bool expect(const std::string& text, double timeout_s = 30);
  void send(const std::string& keys);
  // Waits for the process to end; its exit code (128 + signal when killed), or -1 on timeout.
  int wait_exit(double timeout_s = 30);
  const std::string& output() const { return out_; }
  std::string since_mark() const { return out_.substr(mark_); }
  // The terminal's settings as the process left them (the slave side, read through the master).
  termios terminal() const;

 private:
  void pump(double timeout_s);
  int fd_ = -1;
  pid_t pid_ = -1;
  std::string out_;
  size_t mark_ = 0;
  int status_ = -1;
};

}  // namespace hlwq::test
