#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace hlwq {

Progress::Progress(std::string label, std::string unit, int64_t total_items, int64_t total_bytes, FILE* out)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_items_(total_items),
      total_bytes_(total_bytes),
      out_(out),
      tty_(out != nullptr && isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::add(int64_t items, int64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  done_items_ += items;
  done_bytes_ += bytes;
  auto now = std::chrono::steady_clock::now();
  if (tty_ && now - last_draw_ > std::chrono::milliseconds(100)) {
    last_draw_ = now;
    draw_locked(false);
  }
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (tty_) {
    draw_locked(true);
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

void Progress::draw_locked(bool final) {
  double t = elapsed_s();
  double frac = total_bytes_ > 0 ? double(done_bytes_) / double(total_bytes_)
                                 : (total_items_ > 0 ? double(done_items_) / double(total_items_) : 1.0);
  constexpr int kWidth = 24;
  int filled = int(std::lround(frac * kWidth));
  std::string bar(size_t(std::clamp(filled, 0, kWidth)), '#');
  bar.resize(kWidth, '.');
  double rate = t > 0 ? double(done_bytes_) / t : 0.0;
  std::string eta = (frac > 0 && !final) ? format_duration(t * (1 - frac) / frac) : format_duration(t);
  fmt::print(out_, "\r{} [{}] {}/{} {} | {} / {} | {:.2f} GB/s | {} {}  ", label_, bar, done_items_,
             total_items_, unit_, format_bytes(double(done_bytes_)), format_bytes(double(total_bytes_)),
             rate / 1e9, final ? "took" : "ETA", eta);
  std::fflush(out_);
}

std::string format_bytes(double b) {
  if (b >= 1e9) return fmt::format("{:.2f} GB", b / 1e9);
  if (b >= 1e6) return fmt::format("{:.2f} MB", b / 1e6);
  if (b >= 1e3) return fmt::format("{:.1f} kB", b / 1e3);
  return fmt::format("{:.0f} B", b);
}

std::string format_duration(double s) {
  if (s >= 3600) return fmt::format("{}h{:02d}m", int(s / 3600), int(std::fmod(s, 3600) / 60));
  if (s >= 60) return fmt::format("{}m{:02d}s", int(s / 60), int(std::fmod(s, 60)));
  return fmt::format("{:.1f}s", s);
}

}  // namespace hlwq
