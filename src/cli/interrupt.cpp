#include "cli/interrupt.h"

#include <atomic>
#include <csignal>

#include "core/error.h"

namespace hlwq::cli {
namespace {

volatile std::sig_atomic_t g_interrupts = 0;  // the handler's only way out (see interrupt.h)
std::atomic<bool> g_scope_alive{false};

extern "C" void on_sigint(int) { g_interrupts = g_interrupts + 1; }

}  // namespace

InterruptScope::InterruptScope() {
  HLWQ_CHECK(!g_scope_alive.exchange(true), "InterruptScope: only one may exist at a time");
  g_interrupts = 0;
  struct sigaction sa {};
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: a read waiting for a line returns EINTR
  sigaction(SIGINT, &sa, &previous_);
}

InterruptScope::~InterruptScope() {
  sigaction(SIGINT, &previous_, nullptr);
  g_scope_alive = false;
}

bool InterruptScope::raised() const { return g_interrupts != 0; }
void InterruptScope::clear() { g_interrupts = 0; }

}  // namespace hlwq::cli
