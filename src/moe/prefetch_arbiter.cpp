// PrefetchArbiter (see prefetch_arbiter.h).
#include "moe/prefetch_arbiter.h"

#include <algorithm>

namespace hlwq {
namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

const char* prefetch_mode_name(PrefetchMode m) {
  switch (m) {
    case PrefetchMode::off: return "off";
    case PrefetchMode::on: return "on";
    case PrefetchMode::automatic: return "auto";
  }
  return "?";
}

std::optional<PrefetchMode> parse_prefetch_mode(std::string_view s) {
  if (s == "off") return PrefetchMode::off;
  if (s == "on") return PrefetchMode::on;
  if (s == "auto") return PrefetchMode::automatic;
  return std::nullopt;
}

bool PrefetchArbiter::choose(int64_t T) const {
  const auto it = by_T_.find(T);
  if (it == by_T_.end()) return true;  // a new size starts by probing with the prefetch
  switch (it->second.phase) {
    case Phase::probe_on: return true;
    case Phase::probe_off: return false;
    case Phase::hold: return it->second.choice;
  }
  return true;
}

bool PrefetchArbiter::probing(int64_t T) const {
  const auto it = by_T_.find(T);
  return it == by_T_.end() || it->second.phase != Phase::hold;
}

bool PrefetchArbiter::held(int64_t T) const {
  const auto it = by_T_.find(T);
  return it == by_T_.end() ? true : it->second.choice;
}

void PrefetchArbiter::record(int64_t T, bool prefetched, double us) {
  if (prefetched != choose(T)) return;
  State& s = by_T_[T];
  switch (s.phase) {
    case Phase::probe_on:
      s.on.push_back(us);
      if (int(s.on.size()) == kProbe) s.phase = Phase::probe_off;
      return;
    case Phase::probe_off:
      s.off.push_back(us);
      if (int(s.off.size()) < kProbe) return;
      s.choice = !(median(s.off) < median(s.on) * (1.0 - kMargin));
      ++(s.choice ? decided_on_ : decided_off_);
      s.on.clear(), s.off.clear();
      s.phase = Phase::hold, s.held_steps = 0;
      return;
    case Phase::hold:
      if (++s.held_steps == kHold) s.phase = Phase::probe_on;
      return;
  }
}

}  // namespace hlwq
