// Progress: a thread-safe progress line for long work (tensors or items, bytes, GB/s, ETA).
// On a terminal it redraws one line on stderr at most 10 times a second; elsewhere (logs, CI) it stays
// silent until finish(), so captured output is not flooded with carriage returns.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace hlwq {

class Progress {
 public:
  // label: what is being done ("quantize"); unit: what items are ("tensors"); total_bytes may be 0;
  // out == nullptr disables drawing.
  Progress(std::string label, std::string unit, int64_t total_items, int64_t total_bytes, FILE* out = stderr);
  void add(int64_t items, int64_t bytes);
  void finish();  // draws the final line (on a terminal) and ends it with a newline
  double elapsed_s() const;

 private:
  void draw_locked(bool final);

  std::string label_, unit_;
  int64_t total_items_, total_bytes_;
  int64_t done_items_ = 0, done_bytes_ = 0;
  FILE* out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

// "1.23 GB" with SI units (bytes / 1e9): the units every figure in hlwq's output uses.
std::string format_bytes(double bytes);
std::string format_duration(double seconds);  // "1h02m", "3m05s", "12.3s"

}  // namespace hlwq
