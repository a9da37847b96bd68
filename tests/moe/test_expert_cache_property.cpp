// Randomized property test of the expert cache against a shadow model, plus its negative controls.
// The shadow model knows only what the plans say: it starts with every slot empty and applies each returned copy
// (slot loads, stream-buffer copies by wave, prefetches) to its own picture of slot contents. For every step it
// checks that each needed expert resolves to the right weights (its slot holds that id once the step's copies have
// run, or the stream buffer of its wave carries it), that a hit was reported only on a slot that already held the
// id, that no copy overwrote a slot the open step uses (a pinned victim), that no two needed experts share a slot,
// and that the cache's statistics and its own slot table agree with the shadow. The negative controls replay the
// same traces through test-local broken policies (the seed's pin-ignoring eviction, and a stale expert→slot map)
// and require the checker to flag them, so the checker is known to be able to fail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "moe/expert_cache.h"

using namespace hlwq;

namespace {

constexpr int kExperts = 256, kTopK = 8, kLayers = 3, kStreamBuffers = 3;
constexpr int64_t kBytesPerExpert = 1'622'016;  // one CT-INT4 Qwen3.6 expert (SPEC §5)

struct Step {
  int layer;
  std::vector<int32_t> experts;  // distinct
};

// Routing of kTokens tokens through kLayers layers, top-8 of 256 per token. zipf_s = 0 is uniform; otherwise
// rank r of a per-layer random permutation has weight 1 / (r + 1)^s. Steps are single tokens or batch unions of
// 2, 4 or 16 tokens (up to ~100 distinct experts), so N is exercised below, around and above the step size.
std::vector<Step> make_trace(int n_tokens, double zipf_s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> perm(kLayers, std::vector<int32_t>(kExperts));
  std::vector<double> cdf(kExperts);
  double acc = 0;
  for (int r = 0; r < kExperts; ++r) cdf[size_t(r)] = acc += std::pow(double(r + 1), -zipf_s);
  for (auto& p : perm) {
    for (int e = 0; e < kExperts; ++e) p[size_t(e)] = e;
    std::shuffle(p.begin(), p.end(), rng);
  }
  std::uniform_real_distribution<double> u(0, acc);
  const int batch_sizes[] = {1, 1, 1, 1, 2, 4, 16};
  std::vector<Step> trace;
  for (int t = 0; t < n_tokens;) {
    const int batch = batch_sizes[rng() % 7];
    t += batch;
    for (int l = 0; l < kLayers; ++l) {
      std::vector<uint8_t> used(kExperts, 0);
      Step s{l, {}};
      for (int b = 0; b < batch; ++b) {
        for (int chosen = 0; chosen < kTopK;) {  // top-k of one token: distinct experts
          const int r = int(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
          const int32_t e = perm[size_t(l)][size_t(std::min(r, kExperts - 1))];
          if (used[size_t(e)] & 2) continue;
          used[size_t(e)] |= 2;
          ++chosen;
          if (!(used[size_t(e)] & 1)) s.experts.push_back(e);
          used[size_t(e)] |= 1;
        }
        for (auto& x : used) x &= 1;
      }
      trace.push_back(std::move(s));
    }
  }
  return trace;
}

struct ShadowChecker {
  int n_slots;
  std::vector<std::vector<int32_t>> slots;  // [layer][slot] what the copies put there, -1 = empty
  std::vector<std::vector<uint8_t>> pinned; // [layer][slot] used by the layer's open step
  int64_t violations = 0, bad_steps = 0, steps = 0;
  int64_t hits = 0, loads = 0, streamed = 0, prefetched = 0, copies = 0, needed = 0;
  std::map<std::string, int64_t> kinds;  // violation kind → count
  std::string first;                     // the first violation, with details

  explicit ShadowChecker(int n) : n_slots(n), slots(kLayers, std::vector<int32_t>(size_t(n), -1)),
                                  pinned(kLayers, std::vector<uint8_t>(size_t(n), 0)) {}

  bool flag(const std::string& kind, const std::string& detail = "") {
    if (violations++ == 0) first = kind + detail;
    ++kinds[kind];
    return false;
  }
  int64_t count(const std::string& kind) const { return kinds.count(kind) ? kinds.at(kind) : 0; }
  bool valid_slot(int s) { return s >= 0 && s < n_slots; }

  void on_step(const Step& st, const StepPlan& plan) {
    ++steps;
    bool ok = plan.layer == st.layer && plan.placements.size() == st.experts.size();
    if (!ok) {
      ++bad_steps;
      flag("plan does not match the request");
      return;
    }
    auto& sl = slots[size_t(st.layer)];
    auto& pin = pinned[size_t(st.layer)];
    int64_t want_copies = 0;
    std::vector<uint8_t> load_slot(size_t(n_slots), 0), loaded(size_t(n_slots), 0);
    for (size_t i = 0; i < st.experts.size(); ++i) {  // hits must already be true before any copy
      const ExpertPlacement& p = plan.placements[i];
      if (p.expert != st.experts[i]) ok = flag("placement names another expert");
      if (p.where == ExpertWhere::kStream) continue;
      ++want_copies;
      if (!valid_slot(p.index)) {
        ok = flag("slot out of range");
        continue;
      }
      if (pin[size_t(p.index)]) ok = flag("two needed experts share a slot", " " + std::to_string(p.index));
      pin[size_t(p.index)] = 1;
      if (p.where == ExpertWhere::kSlotLoad) load_slot[size_t(p.index)] = 1;
      if (p.where == ExpertWhere::kSlotHit) {
        --want_copies;
        ++hits;
        if (sl[size_t(p.index)] != p.expert) ok = flag("hit on a slot that does not hold the expert");
      }
    }
    std::map<std::pair<int, int>, int32_t> stream;  // (buffer, wave) → expert carried
    for (const ExpertCopy& c : plan.copies) {
      ++copies;
      if (c.dst == ExpertCopyDst::kStreamBuffer) {
        ++want_copies;
        if (c.index < 0 || c.index >= kStreamBuffers) ok = flag("stream buffer out of range");
        if (!stream.emplace(std::pair{c.index, c.wave}, c.expert).second) ok = flag("stream buffer reused in a wave");
        continue;
      }
      if (!valid_slot(c.index)) {
        ok = flag("copy into a slot out of range");
        continue;
      }
      // A slot copy must fill a slot that exactly one load of this step names: anything else is a pinned victim
      // (a hit's or an earlier load's slot) or a stray eviction.
      if (!load_slot[size_t(c.index)] || loaded[size_t(c.index)]++)
        ok = flag("step copy into a slot no load of this step owns", " " + std::to_string(c.index));
      sl[size_t(c.index)] = c.expert;
    }
    for (const ExpertPlacement& p : plan.placements) {  // every needed expert resolves to the right weights
      if (p.where == ExpertWhere::kStream) {
        ++streamed;
        auto it = stream.find({p.index, p.wave});
        if (it == stream.end() || it->second != p.expert) ok = flag("stream buffer does not carry the expert");
      } else {
        loads += p.where == ExpertWhere::kSlotLoad;
        if (valid_slot(p.index) && sl[size_t(p.index)] != p.expert)
          ok = flag("needed expert evicted within its own step",
                    " (expert " + std::to_string(p.expert) + ", slot " + std::to_string(p.index) + ")");
      }
    }
    if (int64_t(plan.copies.size()) != want_copies) ok = flag("copies do not match loads + streams");
    needed += int64_t(st.experts.size());
    bad_steps += !ok;
  }

  void on_prefetch(int layer, const std::vector<ExpertCopy>& cs) {
    for (const ExpertCopy& c : cs) {
      ++copies;
      ++prefetched;
      if (c.dst != ExpertCopyDst::kSlot || !valid_slot(c.index)) {
        flag("prefetch copy to a bad destination");
        continue;
      }
      if (pinned[size_t(layer)][size_t(c.index)]) flag("prefetch evicted a pinned slot");
      slots[size_t(layer)][size_t(c.index)] = c.expert;
    }
  }

  void on_end(int layer) { std::fill(pinned[size_t(layer)].begin(), pinned[size_t(layer)].end(), uint8_t(0)); }
};

// The seed's bug, reproduced: misses are handled one at a time and the LFRU victim is chosen among all slots,
// including ones this step already placed or hit. With kStaleHit instead, pins are honoured but an evicted expert
// keeps its expert→slot entry, so it is later reported as a hit on a slot that holds something else.
class BuggyCache {
 public:
  enum class Bug { kIgnorePins, kStaleHit };
  BuggyCache(int n_slots, Bug bug)
      : bug_(bug), n_slots_(n_slots), slot_(kLayers, std::vector<int32_t>(size_t(n_slots), -1)),
        where_(kLayers, std::vector<int32_t>(kExperts, -1)), uses_(kLayers, std::vector<uint32_t>(kExperts, 0)),
        used_(kLayers, std::vector<uint64_t>(size_t(n_slots), 0)) {}

  StepPlan begin_step(int layer, std::span<const int32_t> experts) {
    StepPlan plan;
    plan.layer = layer;
    auto &slot = slot_[size_t(layer)], &where = where_[size_t(layer)];
    std::vector<uint8_t> pin(size_t(n_slots_), 0);
    for (int32_t e : experts) ++uses_[size_t(layer)][size_t(e)];
    for (int32_t e : experts) {
      ++tick_;
      if (where[size_t(e)] >= 0) {
        plan.placements.push_back({e, ExpertWhere::kSlotHit, where[size_t(e)], 0});
        pin[size_t(where[size_t(e)])] = 1;
        used_[size_t(layer)][size_t(where[size_t(e)])] = tick_;
        continue;
      }
      int v = -1;
      for (int s = 0; s < n_slots_; ++s) {
        if (bug_ == Bug::kStaleHit && pin[size_t(s)]) continue;
        if (v < 0 || score(layer, s) < score(layer, v)) v = s;
      }
      if (v < 0) {
        plan.placements.push_back({e, ExpertWhere::kStream, 0, int32_t(plan.n_waves)});
        plan.copies.push_back({e, ExpertCopyDst::kStreamBuffer, 0, int32_t(plan.n_waves++)});
        continue;
      }
      if (bug_ == Bug::kIgnorePins && slot[size_t(v)] >= 0) where[size_t(slot[size_t(v)])] = -1;
      slot[size_t(v)] = e;
      where[size_t(e)] = v;
      pin[size_t(v)] = 1;
      used_[size_t(layer)][size_t(v)] = tick_;
      plan.placements.push_back({e, ExpertWhere::kSlotLoad, v, 0});
      plan.copies.push_back({e, ExpertCopyDst::kSlot, v, 0});
    }
    return plan;
  }
  void end_step(int) {}

 private:
  // (aged-frequency stand-in, recency): empty slots score lowest.
  std::pair<int64_t, uint64_t> score(int layer, int s) const {
    const int32_t e = slot_[size_t(layer)][size_t(s)];
    if (e < 0) return {-1, 0};
    return {uses_[size_t(layer)][size_t(e)], used_[size_t(layer)][size_t(s)]};
  }
  Bug bug_;
  int n_slots_;
  std::vector<std::vector<int32_t>> slot_, where_;
  std::vector<std::vector<uint32_t>> uses_;
  std::vector<std::vector<uint64_t>> used_;
  uint64_t tick_ = 0;
};

// Replays a trace; with an ExpertCache it also prefetches (the next layer's suggestions, and random
// "predictions" into the layer whose step is open) and compares the cache's own slot table with the shadow.
template <class Cache>
ShadowChecker replay(Cache& cache, const std::vector<Step>& trace, int n_slots, uint64_t* plan_hash = nullptr) {
  ShadowChecker chk(n_slots);
  std::mt19937 rng(7);
  for (const Step& st : trace) {
    StepPlan plan = cache.begin_step(st.layer, st.experts);
    chk.on_step(st, plan);
    if (plan_hash)
      for (const ExpertPlacement& p : plan.placements)
        *plan_hash = (*plan_hash ^ uint64_t(p.expert * 1000003 + int(p.where) * 7919 + p.index * 31 + p.wave)) *
                     1099511628211ull;
    if constexpr (std::is_same_v<Cache, ExpertCache>) {
      const int next = (st.layer + 1) % kLayers;
      chk.on_prefetch(next, cache.prefetch(next, cache.suggest_prefetch(next, 2)));
      for (int round = 0; round < 2; ++round) {  // twice: a second call must still see the step's pins
        std::vector<int32_t> guess = {int32_t(rng() % kExperts), int32_t(rng() % kExperts)};
        chk.on_prefetch(st.layer, cache.prefetch(st.layer, guess));
      }
      for (int s = 0; s < n_slots; ++s)
        if (cache.slot_expert(st.layer, s) != chk.slots[size_t(st.layer)][size_t(s)])
          chk.flag("cache slot table disagrees with its copies");
    }
    cache.end_step(st.layer);
    chk.on_end(st.layer);
  }
  return chk;
}

ExpertCacheConfig config(int n_slots, ExpertEvictionPolicy policy) {
  ExpertCacheConfig c;
  c.n_layers = kLayers;
  c.n_experts = kExperts;
  c.n_slots = n_slots;
  c.n_stream_buffers = kStreamBuffers;
  c.bytes_per_expert = kBytesPerExpert;
  c.policy = policy;
  c.lfru_half_life_steps = 64;  // short, so aging actually happens within the trace
  return c;
}

const int kSlotCounts[] = {1, 2, 4, 8, 16, 64, 256};

}  // namespace

TEST(ExpertCacheProperty, EveryStepResolvesToTheRightWeights) {
  for (double zipf_s : {0.0, 1.1}) {
    const std::vector<Step> trace = make_trace(4000, zipf_s, 2024);
    for (int n : kSlotCounts) {
      for (auto policy : {ExpertEvictionPolicy::kLru, ExpertEvictionPolicy::kLfru}) {
        SCOPED_TRACE(::testing::Message() << "zipf " << zipf_s << " N " << n << " "
                                          << expert_eviction_policy_name(policy));
        ExpertCache cache(config(n, policy));
        uint64_t h1 = 0, h2 = 0;
        const ShadowChecker chk = replay(cache, trace, n, &h1);
        EXPECT_EQ(chk.violations, 0) << chk.first;
        EXPECT_EQ(chk.bad_steps, 0);
        const ExpertCacheStats& st = cache.stats();
        EXPECT_EQ(st.steps, int64_t(trace.size()));
        EXPECT_EQ(st.hits, chk.hits);
        EXPECT_EQ(st.misses, chk.loads);
        EXPECT_EQ(st.streamed, chk.streamed);
        EXPECT_EQ(st.prefetched, chk.prefetched);
        EXPECT_EQ(st.lookups(), chk.needed);
        EXPECT_EQ(st.bytes_copied, chk.copies * kBytesPerExpert);
        if (n < kTopK) {
          EXPECT_GT(st.streamed, 0);
        }
        if (n == 256) {
          EXPECT_EQ(st.streamed, 0);  // a 16-token union never exceeds 128 distinct experts
        }
        ExpertCache again(config(n, policy));  // determinism: same calls, same plans
        replay(again, trace, n, &h2);
        EXPECT_EQ(h1, h2);
      }
    }
  }
}

TEST(ExpertCacheProperty, NegativeControlSeedEvictionIsCaught) {
  // The seed's pin-ignoring eviction must be flagged for every N below the experts a step can need, under both
  // traces; at N = 256 nothing is ever evicted, so there is nothing to catch.
  for (double zipf_s : {0.0, 1.1}) {
    const std::vector<Step> trace = make_trace(400, zipf_s, 99);
    for (int n : kSlotCounts) {
      if (n == 256) continue;
      BuggyCache bad(n, BuggyCache::Bug::kIgnorePins);
      const ShadowChecker chk = replay(bad, trace, n);
      EXPECT_GT(chk.bad_steps, 0) << "zipf " << zipf_s << " N " << n;
      EXPECT_GT(chk.count("needed expert evicted within its own step"), 0) << chk.first;
    }
  }
}

TEST(ExpertCacheProperty, NegativeControlStaleHitIsCaught) {
  const std::vector<Step> trace = make_trace(400, 1.1, 5);
  BuggyCache bad(8, BuggyCache::Bug::kStaleHit);
  const ShadowChecker chk = replay(bad, trace, 8);
  EXPECT_GT(chk.bad_steps, 0);
  EXPECT_GT(chk.count("hit on a slot that does not hold the expert"), 0) << chk.first;
}
