// --moe-prefetch auto (issue 8 item 2): whether the GPU expert cache prefetches the next layer's predicted experts
// is decided by timing the decode step both ways. Whether the prefetch pays depends on how well the next layer's
// router, applied to this layer's hidden state, predicts that layer's experts (often, in trained models; barely,
// with random weights) and on what its branch costs beside the step: on the trained demo model it lifts hits from
// 135 to 205 of 365 lookups; on the random-weight Qwen3.6 at 8–16 GB it costs 10–28 % of the decode speed
// (BENCHMARKS.md). No rule over the cache's counters settles that for every model and machine, so the arbiter
// measures it: for each decode batch size it times kProbe steps with the prefetch and kProbe without, keeps the
// faster by the median (the prefetch on a tie within kMargin: it saves PCIe bytes), holds that for kHold timed
// steps, and probes again (a conversation drifts, and the cache's contents with it). Both ways give the same
// logits bit for bit (a prefetch only moves copies earlier), so switching has no numerical effect.
// Pure host logic, no CUDA: the CUDA backend asks choose() per decode step and reports each step it replays (timed
// while probing). Without decode graphs (a debugging switch) no step is timed and auto stays with the prefetch.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

namespace hlwq {

enum class PrefetchMode : uint8_t { off = 0, on = 1, automatic = 2 };
const char* prefetch_mode_name(PrefetchMode m);
std::optional<PrefetchMode> parse_prefetch_mode(std::string_view s);  // "off" | "on" | "auto"

class PrefetchArbiter {
 public:
  static constexpr int kProbe = 8;           // timed steps of each way per probe
  static constexpr int kHold = 512;          // steps the choice holds before the next probe (not timed)
  static constexpr double kMargin = 0.02;    // without the prefetch must be this much faster to turn it off

  // Whether the next decode step of T tokens prefetches. The schedule advances only on record(), so a step that
  // is not timed (one that records its graph) leaves it where it was.
  bool choose(int64_t T) const;
  // Whether the next step of T tokens is part of a probe, so its device time is wanted (a held step's time is not
  // used: the backend times only probes, as the timing itself costs a few µs of host work a step).
  bool probing(int64_t T) const;
  // The step of T tokens that prefetched (or not) ran and took `us` of device time (ignored while the choice holds:
  // pass 0). A step that ran the other way than choose(T) said (none does in the backend) is ignored.
  void record(int64_t T, bool prefetched, double us);
  // The choice in force for T (a step that cannot be timed, e.g. a small prefill, follows it); before any decision:
  // prefetch on.
  bool held(int64_t T) const;
  // Decisions made so far (for the plan and the tests): how many probes ended with the prefetch on and off.
  int64_t decided_on() const { return decided_on_; }
  int64_t decided_off() const { return decided_off_; }

 private:
  enum class Phase : uint8_t { probe_on, probe_off, hold };
  struct State {
    Phase phase = Phase::probe_on;
    std::vector<double> on, off;  // this probe's samples
    int held_steps = 0;
    bool choice = true;
  };
  std::map<int64_t, State> by_T_;
  int64_t decided_on_ = 0, decided_off_ = 0;
};

}  // namespace hlwq
