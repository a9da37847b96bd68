// Progress: a thread-safe progress line for long work (items, an amount of bytes or tokens, its rate, an ETA).
// On a terminal a ticker thread redraws one line on stderr every 250 ms from the start, so the elapsed time shows
// before the first item completes; elsewhere (logs, CI) nothing is drawn, so captured output is not flooded with
// carriage returns. The ETA is remaining amount over measured throughput: with one kind of work, amount done
// over wall time; with several kinds (expect_kind: e.g. copied vs quantized bytes, which differ 100x in cost),
// each kind's measured thread-seconds per unit times its remaining amount, divided by the threads working. A
// kind with remaining work and no measurement yet shows "ETA --" rather than a guess.
#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace hlwq {

class Progress {
 public:
  enum class Amount { bytes, tokens };  // how the amount and its rate print: "1.2 GB, 0.5 GB/s" or "2048 tok, 90 tok/s"
  // label: what is being done ("quantize"); unit: what items are ("tensors"); total_amount may be 0;
  // out == nullptr disables drawing.
  Progress(std::string label, std::string unit, int64_t total_items, int64_t total_amount, FILE* out = stderr,
           Amount amount = Amount::bytes);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Declares a kind of work with its total amount and the threads that share it (kinds 0, 1, ... in order).
  void expect_kind(int kind, int64_t total_amount, int threads);
  // One or more items done. With kinds: which kind, and the thread-seconds it took (wall time x threads used).
  void add(int64_t items, int64_t amount, int kind = -1, double thread_seconds = 0);
  // Text shown at the end of the line (e.g. a running perplexity).
  void set_status(std::string status);
  // Prints a line of its own above the progress line (on a terminal), or as is (elsewhere).
  void note(const std::string& line);
  void finish();  // draws the final line (on a terminal) and ends it with a newline; stops the ticker
  double elapsed_s() const;
  bool drawing() const { return tty_; }  // a terminal: the line is redrawn in place
  // Seconds left, or a negative number when not yet measurable. Public for tests.
  double eta_s() const;

 private:
  void draw_locked(bool final);
  double eta_locked() const;
  void stop_ticker();

  struct Kind {
    int64_t total = 0, done = 0;
    double thread_s = 0;
    int threads = 1;
  };
  std::string label_, unit_, status_;
  int64_t total_items_, total_amount_;
  int64_t done_items_ = 0, done_amount_ = 0;
  std::vector<Kind> kinds_;
  FILE* out_;
  Amount amount_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::thread ticker_;
};

// "1.23 GB" with SI units (bytes / 1e9): the units every figure in hlwq's output uses.
std::string format_bytes(double bytes);
std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace hlwq
