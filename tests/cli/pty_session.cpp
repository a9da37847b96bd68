#include "pty_session.h"

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "test_paths.h"

namespace hlwq::test {

PtySession::PtySession(const std::string& args) {
  std::vector<std::string> argv{hlwq_binary().string()};
  std::istringstream ss(args);
  for (std::string w; ss >> w;) argv.push_back(w);
  struct winsize ws {};
  ws.ws_row = 40;
  ws.ws_col = 200;
  pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
  if (pid_ < 0) throw std::runtime_error("forkpty failed");
  if (pid_ == 0) {
    std::vector<char*> cargs;
    for (std::string& a : argv) cargs.push_back(a.data());
    cargs.push_back(nullptr);
    setenv("TERM", "xterm", 1);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
}

PtySession::~PtySession() {
  if (pid_ > 0 && status_ < 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (fd_ >= 0) close(fd_);
}

void PtySession::pump(double timeout_s) {
  pollfd p{fd_, POLLIN, 0};
  if (poll(&p, 1, int(timeout_s * 1000)) <= 0) return;
  char buf[4096];
  const ssize_t n = read(fd_, buf, sizeof buf);
  if (n > 0) out_.append(buf, size_t(n));
}

bool PtySession::expect(const std::string& text, double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (true) {
    const size_t at = out_.find(text, mark_);
    if (at != std::string::npos) {
      mark_ = at + text.size();
      return true;
    }
    const double left = std::chrono::duration<double>(end - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pump(std::min(left, 0.1));
  }
}

void PtySession::send(const std::string& keys) {
  for (char c : keys) {  // one key at a time, as typed
    if (write(fd_, &c, 1) != 1) throw std::runtime_error("write to the pty failed");
    usleep(2000);
  }
}

int PtySession::wait_exit(double timeout_s) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < end) {
    pump(0.05);  // keep draining so the child never blocks on a full pty
    int st = 0;
    if (waitpid(pid_, &st, WNOHANG) == pid_) {
      for (int i = 0; i < 5; ++i) pump(0.02);
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      return status_;
    }
  }
  return -1;
}

termios PtySession::terminal() const {
  termios t{};
  tcgetattr(fd_, &t);
  return t;
}

}  // namespace hlwq::test
