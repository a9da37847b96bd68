// Ctrl-C as a request instead of a kill: while an InterruptScope lives, SIGINT only counts (installed without
// SA_RESTART, so a blocking read returns EINTR and the line reader sees it); the previous action is restored
// when the scope ends. A signal handler can reach nothing but static storage, so the count is the one piece of
// process-wide state in hlwq, and only one scope may exist at a time.
#pragma once
#include <signal.h>

namespace hlwq::cli {

class InterruptScope {
 public:
  InterruptScope();
  ~InterruptScope();
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  bool raised() const;  // a Ctrl-C since the last clear()
  void clear();

 private:
  struct sigaction previous_ {};
};

}  // namespace hlwq::cli
