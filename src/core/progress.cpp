#include "core/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

namespace hlwq {

Progress::Progress(std::string label, std::string unit, int64_t total_items, int64_t total_amount, FILE* out,
                   Amount amount)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_items_(total_items),
      total_amount_(total_amount),
      out_(out),
      amount_(amount),
      tty_(out != nullptr && isatty(fileno(out)) != 0),
      start_(std::chrono::steady_clock::now()) {
  if (!tty_) return;
  ticker_ = std::thread([this] {
    std::unique_lock<std::mutex> lock(mu_);
    while (!finished_) {
      draw_locked(false);
      wake_.wait_for(lock, std::chrono::milliseconds(250));
    }
  });
}

Progress::~Progress() { stop_ticker(); }

void Progress::stop_ticker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
  }
  wake_.notify_all();
  if (ticker_.joinable()) ticker_.join();
}

double Progress::elapsed_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::expect_kind(int kind, int64_t total_amount, int threads) {
  std::lock_guard<std::mutex> lock(mu_);
  if (kinds_.size() <= size_t(kind)) kinds_.resize(size_t(kind) + 1);
  kinds_[size_t(kind)].total = total_amount;
  kinds_[size_t(kind)].threads = std::max(threads, 1);
}

void Progress::add(int64_t items, int64_t amount, int kind, double thread_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  done_items_ += items;
  done_amount_ += amount;
  if (kind >= 0 && size_t(kind) < kinds_.size()) {
    kinds_[size_t(kind)].done += amount;
    kinds_[size_t(kind)].thread_s += thread_seconds;
  }
}

void Progress::set_status(std::string status) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = std::move(status);
}

void Progress::note(const std::string& line) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!out_) return;
  if (tty_) {
    fmt::print(out_, "\r\033[K{}\n", line);
    if (!finished_) draw_locked(false);
  } else {
    fmt::print(out_, "{}\n", line);
  }
  std::fflush(out_);
}

void Progress::finish() {
  stop_ticker();
  std::lock_guard<std::mutex> lock(mu_);
  if (tty_) {
    draw_locked(true);
    std::fputc('\n', out_);
    std::fflush(out_);
  }
}

double Progress::eta_s() const {
  std::lock_guard<std::mutex> lock(mu_);
  return eta_locked();
}

double Progress::eta_locked() const {
  const double t = elapsed_s();
  if (kinds_.empty()) {
    if (done_amount_ <= 0 || total_amount_ <= 0) return -1;
    return t * double(total_amount_ - done_amount_) / double(done_amount_);
  }
  double left = 0;
  for (const Kind& k : kinds_) {
    if (k.done >= k.total) continue;
    if (k.done <= 0 || k.thread_s <= 0) return -1;  // work of a kind not measured yet
    left += double(k.total - k.done) * (k.thread_s / double(k.done)) / double(k.threads);
  }
  return left;
}

void Progress::draw_locked(bool final) {
  if (!tty_) return;
  const double t = elapsed_s();
  const double frac = total_amount_ > 0 ? double(done_amount_) / double(total_amount_)
                                        : (total_items_ > 0 ? double(done_items_) / double(total_items_) : 1.0);
  constexpr int kWidth = 24;
  const int filled = int(std::lround(std::clamp(frac, 0.0, 1.0) * kWidth));
  std::string bar(size_t(filled), '#');
  bar.resize(kWidth, '.');
  const double rate = t > 0 ? double(done_amount_) / t : 0.0;
  std::string amount;
  if (amount_ == Amount::bytes)
    amount = fmt::format("{} / {} | {:.2f} GB/s", format_bytes(double(done_amount_)), format_bytes(double(total_amount_)),
                         rate / 1e9);
  else
    amount = fmt::format("{}/{} tok | {:.0f} tok/s", done_amount_, total_amount_, rate);
  std::string when;
  if (final) {
    when = "took " + format_duration(t);
  } else {
    const double eta = eta_locked();
    when = (eta < 0 ? std::string("ETA --") : "ETA " + format_duration(eta)) + " (" + format_duration(t) + ")";
  }
  fmt::print(out_, "\r\033[K{} [{}] {}/{} {} | {} | {}{}{}", label_, bar, done_items_, total_items_, unit_, amount,
             when, status_.empty() ? "" : " | ", status_);
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
