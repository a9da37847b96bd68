// Hand cases for the expert cache policy: hits and misses, eviction order under LRU and LFRU (with admission and
// aging), streaming when a step needs more experts than slots, no eviction once every expert fits, pins against
// prefetch, prefetch suggestions and argument checks. The randomized shadow-model check (and its negative
// control) lives in test_expert_cache_property.cpp.
#include <gtest/gtest.h>

#include <cstring>

#include <vector>

#include "core/error.h"
#include "moe/expert_cache.h"

using namespace hlwq;

namespace {

ExpertCacheConfig config(int n_slots, ExpertEvictionPolicy policy, int n_experts = 16, int n_bufs = 2) {
  ExpertCacheConfig c;
  c.n_layers = 2;
  c.n_experts = n_experts;
  c.n_slots = n_slots;
  c.n_stream_buffers = n_bufs;
  c.bytes_per_expert = 1000;
  c.policy = policy;
  return c;
}

// One whole step (begin + end) of layer 0.
StepPlan step(ExpertCache& c, std::vector<int32_t> experts, int layer = 0) {
  StepPlan p = c.begin_step(layer, experts);
  c.end_step(layer);
  return p;
}

void expect_placement(const ExpertPlacement& p, int32_t expert, ExpertWhere where, int32_t index, int32_t wave = 0) {
  EXPECT_EQ(p.expert, expert);
  EXPECT_EQ(int(p.where), int(where)) << "expert " << expert;
  EXPECT_EQ(p.index, index) << "expert " << expert;
  EXPECT_EQ(p.wave, wave) << "expert " << expert;
}

}  // namespace

TEST(ExpertCache, HitsMissesAndStats) {
  ExpertCache c(config(4, ExpertEvictionPolicy::kLru));
  StepPlan p = step(c, {1, 2, 3});
  ASSERT_EQ(p.placements.size(), 3u);
  expect_placement(p.placements[0], 1, ExpertWhere::kSlotLoad, 0);
  expect_placement(p.placements[1], 2, ExpertWhere::kSlotLoad, 1);
  expect_placement(p.placements[2], 3, ExpertWhere::kSlotLoad, 2);
  ASSERT_EQ(p.copies.size(), 3u);
  EXPECT_EQ(p.copies[0].expert, 1);
  EXPECT_EQ(int(p.copies[0].dst), int(ExpertCopyDst::kSlot));
  EXPECT_EQ(p.n_waves, 0);

  p = step(c, {3, 4, 2});
  expect_placement(p.placements[0], 3, ExpertWhere::kSlotHit, 2);
  expect_placement(p.placements[1], 4, ExpertWhere::kSlotLoad, 3);
  expect_placement(p.placements[2], 2, ExpertWhere::kSlotHit, 1);
  ASSERT_EQ(p.copies.size(), 1u);
  EXPECT_EQ(p.copies[0].expert, 4);

  EXPECT_EQ(c.stats().hits, 2);
  EXPECT_EQ(c.stats().misses, 4);
  EXPECT_EQ(c.stats().streamed, 0);
  EXPECT_EQ(c.stats().bytes_copied, 4000);
  EXPECT_DOUBLE_EQ(c.stats().hit_rate(), 2.0 / 6.0);
  EXPECT_EQ(c.slot_expert(0, 3), 4);
  EXPECT_EQ(c.expert_slot(0, 1), 0);
  EXPECT_EQ(c.expert_slot(1, 1), -1);  // layers are independent
}

TEST(ExpertCache, LruEvictsLeastRecentlyUsed) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLru));
  step(c, {1});
  step(c, {2});
  step(c, {1});
  StepPlan p = step(c, {3});  // 2 is the least recent
  expect_placement(p.placements[0], 3, ExpertWhere::kSlotLoad, 1);
  EXPECT_EQ(c.expert_slot(0, 2), -1);
  p = step(c, {2});  // now 1 is
  expect_placement(p.placements[0], 2, ExpertWhere::kSlotLoad, 0);
  EXPECT_EQ(c.expert_slot(0, 1), -1);
  EXPECT_EQ(c.expert_slot(0, 3), 1);
}

TEST(ExpertCache, LfruEvictsLeastFrequentlyUsedWhereLruWouldNot) {
  // Same trace under both policies: 1 is used three times then 2 once, so LRU evicts 1 (older) for 3, LFRU
  // evicts 2 (used less).
  for (auto policy : {ExpertEvictionPolicy::kLru, ExpertEvictionPolicy::kLfru}) {
    ExpertCache c(config(2, policy));
    step(c, {1});
    step(c, {1});
    step(c, {1});
    step(c, {2});
    StepPlan p = step(c, {3});
    const bool lfru = policy == ExpertEvictionPolicy::kLfru;
    expect_placement(p.placements[0], 3, ExpertWhere::kSlotLoad, lfru ? 1 : 0);
    EXPECT_EQ(c.expert_slot(0, 1), lfru ? 0 : -1) << expert_eviction_policy_name(policy);
    EXPECT_EQ(c.expert_slot(0, 2), lfru ? -1 : 1) << expert_eviction_policy_name(policy);
  }
}

TEST(ExpertCache, LfruTiesFallBackToRecency) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLfru));
  step(c, {1});
  step(c, {2});
  StepPlan p = step(c, {3});  // 1 and 2 used once each: the older (1) goes
  expect_placement(p.placements[0], 3, ExpertWhere::kSlotLoad, 0);
}

TEST(ExpertCache, LfruStreamsAColdExpertInsteadOfEvictingAHotOne) {
  ExpertCache c(config(1, ExpertEvictionPolicy::kLfru));
  for (int i = 0; i < 3; ++i) step(c, {1});
  StepPlan p = step(c, {2});
  expect_placement(p.placements[0], 2, ExpertWhere::kStream, 0);
  EXPECT_EQ(c.expert_slot(0, 1), 0);
  EXPECT_EQ(c.stats().streamed, 1);
  // LRU always admits.
  ExpertCache lru(config(1, ExpertEvictionPolicy::kLru));
  for (int i = 0; i < 3; ++i) step(lru, {1});
  expect_placement(step(lru, {2}).placements[0], 2, ExpertWhere::kSlotLoad, 0);
}

TEST(ExpertCache, LfruAgingLetsANewExpertIn) {
  // Half-life 4: the 4th step halves 1's count (3 → 1) before 2's first use (0 → 1), so 2 ties and is admitted.
  ExpertCacheConfig cfg = config(1, ExpertEvictionPolicy::kLfru);
  cfg.lfru_half_life_steps = 4;
  ExpertCache c(cfg);
  for (int i = 0; i < 3; ++i) step(c, {1});
  expect_placement(step(c, {2}).placements[0], 2, ExpertWhere::kSlotLoad, 0);
}

TEST(ExpertCache, OneSlotTopEightStreamsSevenInWaves) {
  ExpertCache c(config(1, ExpertEvictionPolicy::kLru, 256, 3));
  const std::vector<int32_t> experts = {10, 20, 30, 40, 50, 60, 70, 80};
  StepPlan p = step(c, experts);
  expect_placement(p.placements[0], 10, ExpertWhere::kSlotLoad, 0);
  for (int j = 0; j < 7; ++j)
    expect_placement(p.placements[size_t(j + 1)], experts[size_t(j + 1)], ExpertWhere::kStream, j % 3, j / 3);
  EXPECT_EQ(p.n_waves, 3);
  ASSERT_EQ(p.copies.size(), 8u);
  EXPECT_EQ(int(p.copies[0].dst), int(ExpertCopyDst::kSlot));
  for (size_t j = 1; j < 8; ++j) EXPECT_EQ(int(p.copies[j].dst), int(ExpertCopyDst::kStreamBuffer));
  EXPECT_EQ(c.stats().streamed, 7);
  EXPECT_EQ(c.stats().misses, 1);

  // Next step: 10 hits, the others stream again (the only slot is pinned by 10).
  p = step(c, experts);
  expect_placement(p.placements[0], 10, ExpertWhere::kSlotHit, 0);
  EXPECT_EQ(c.stats().streamed, 14);
}

TEST(ExpertCache, NeverEvictsOnceEveryExpertFits) {
  for (int n_slots : {16, 40}) {
    for (auto policy : {ExpertEvictionPolicy::kLru, ExpertEvictionPolicy::kLfru}) {
      ExpertCache c(config(n_slots, policy, 16));
      uint32_t x = 12345;
      for (int t = 0; t < 500; ++t) {
        std::vector<int32_t> experts;
        for (int32_t e = 0; e < 16; ++e) {
          x = x * 1664525u + 1013904223u;
          if ((x >> 24) < 80) experts.push_back(e);  // each expert with p ≈ 0.31
        }
        step(c, experts);
      }
      // Each expert was loaded exactly once; nothing was streamed or evicted.
      EXPECT_EQ(c.stats().misses, 16) << n_slots << " " << expert_eviction_policy_name(policy);
      EXPECT_EQ(c.stats().streamed, 0);
      EXPECT_EQ(c.stats().hits, c.stats().lookups() - 16);
    }
  }
}

TEST(ExpertCache, PrefetchNeverTouchesPinnedSlots) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLru));
  const std::vector<int32_t> step_experts = {1, 2}, want = {3, 4};
  c.begin_step(0, step_experts);
  EXPECT_TRUE(c.slot_pinned(0, 0));
  EXPECT_TRUE(c.prefetch(0, want).empty());  // both slots pinned by the open step
  EXPECT_EQ(c.slot_expert(0, 0), 1);
  EXPECT_EQ(c.slot_expert(0, 1), 2);
  c.end_step(0);
  EXPECT_FALSE(c.slot_pinned(0, 0));
  // Unpinned: both prefetched, and the second does not evict the first.
  std::vector<ExpertCopy> copies = c.prefetch(0, want);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_EQ(c.expert_slot(0, 3), copies[0].index);
  EXPECT_EQ(c.expert_slot(0, 4), copies[1].index);
  EXPECT_EQ(c.stats().prefetched, 2);
  EXPECT_EQ(c.stats().bytes_copied, 4000);
  expect_placement(step(c, {3}).placements[0], 3, ExpertWhere::kSlotHit, copies[0].index);
}

// A prediction already resident keeps its slot: the LRU victim (slot 0, expert 0, the tie's lower index) is
// itself predicted, so the new prediction goes to slot 1; the counters see a prefetch hit and a wasted prefetch.
TEST(ExpertCache, PrefetchNeverEvictsAPredictedExpert) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLru));
  step(c, {0, 1});
  const std::vector<int32_t> predicted = {0, 5};
  std::vector<ExpertCopy> copies = c.prefetch(0, predicted);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].expert, 5);
  EXPECT_EQ(c.slot_expert(0, 0), 0);
  EXPECT_EQ(c.slot_expert(0, 1), 5);
  EXPECT_FALSE(c.slot_pinned(0, 0));  // the reservation ends with the call
  step(c, {5});
  EXPECT_EQ(c.stats().prefetch_hits, 1);
  const std::vector<int32_t> next = {7};
  c.prefetch(0, next);  // evicts slot 0 (expert 0, older): not a prefetched slot
  EXPECT_EQ(c.stats().prefetch_wasted, 0);
  c.prefetch(0, std::vector<int32_t>{8});   // evicts slot 1 (5, used since): not wasted
  c.prefetch(0, std::vector<int32_t>{9});   // evicts slot 0 (7, never used): wasted
  c.prefetch(0, std::vector<int32_t>{10});  // evicts slot 1 (8, never used): wasted
  EXPECT_EQ(c.stats().prefetch_wasted, 2) << "7 and 8 were prefetched and evicted unused";
}

TEST(ExpertCache, PrefetchKeepsPinsOfAnOpenStepOnTheSameLayer) {
  ExpertCache c(config(3, ExpertEvictionPolicy::kLru));
  const std::vector<int32_t> a = {1}, b = {5, 6};
  c.begin_step(0, a);
  std::vector<ExpertCopy> copies = c.prefetch(0, b);
  ASSERT_EQ(copies.size(), 2u);
  EXPECT_NE(copies[0].index, 0);
  EXPECT_NE(copies[1].index, 0);
  EXPECT_TRUE(c.slot_pinned(0, 0));  // still pinned after prefetch returns
  EXPECT_FALSE(c.slot_pinned(0, copies[0].index));
  c.end_step(0);
}

TEST(ExpertCache, SuggestPrefetchRanksNonResidentByUse) {
  ExpertCache c(config(1, ExpertEvictionPolicy::kLru));
  step(c, {7});
  step(c, {7});
  step(c, {3});
  step(c, {5});  // resident now
  EXPECT_EQ(c.suggest_prefetch(0, 5), (std::vector<int32_t>{7, 3}));
  EXPECT_EQ(c.suggest_prefetch(0, 1), (std::vector<int32_t>{7}));
  EXPECT_TRUE(c.suggest_prefetch(1, 5).empty());
  EXPECT_TRUE(c.suggest_prefetch(0, 0).empty());
}

TEST(ExpertCache, RejectsBadArgumentsWithoutChangingState) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLru));
  const std::vector<int32_t> dup = {1, 1}, oob = {16}, neg = {-1}, ok = {1};
  EXPECT_THROW(c.begin_step(0, dup), Error);
  EXPECT_THROW(c.begin_step(0, oob), Error);
  EXPECT_THROW(c.begin_step(0, neg), Error);
  EXPECT_THROW(c.begin_step(2, ok), Error);
  EXPECT_THROW(c.end_step(0), Error);
  EXPECT_EQ(c.stats().steps, 0);
  c.begin_step(0, ok);
  EXPECT_THROW(c.begin_step(0, ok), Error);
  c.end_step(0);
  EXPECT_THROW(c.prefetch(0, oob), Error);
  for (int bad_slots : {0, -3}) EXPECT_THROW(ExpertCache(config(bad_slots, ExpertEvictionPolicy::kLru)), Error);
  EXPECT_THROW(ExpertCache(config(2, ExpertEvictionPolicy::kLru, 16, 0)), Error);
}

TEST(ExpertCache, EmptyStepIsANoOp) {
  ExpertCache c(config(2, ExpertEvictionPolicy::kLfru));
  StepPlan p = step(c, {});
  EXPECT_TRUE(p.placements.empty());
  EXPECT_TRUE(p.copies.empty());
  EXPECT_EQ(c.stats().lookups(), 0);
}

// += and − go through every counter: readings with a distinct value in each member (written as the struct's
// int64_t words, so no member is named here and none can be left out) come back word for word.
TEST(ExpertCache, StatsArithmeticCoversEveryCounter) {
  constexpr size_t kWords = sizeof(ExpertCacheStats) / sizeof(int64_t);
  int64_t wa[kWords], wb[kWords], back[kWords], sum[kWords];
  for (size_t i = 0; i < kWords; ++i) wa[i] = int64_t(1000 + 7 * i), wb[i] = int64_t(5000 + 13 * i * i);
  ExpertCacheStats a, b;
  std::memcpy(&a, wa, sizeof a);
  std::memcpy(&b, wb, sizeof b);
  const ExpertCacheStats d = b - a;
  ExpertCacheStats s = a;
  s += d;
  std::memcpy(back, &d, sizeof d);
  std::memcpy(sum, &s, sizeof s);
  for (size_t i = 0; i < kWords; ++i) {
    EXPECT_EQ(back[i], wb[i] - wa[i]) << "word " << i;
    EXPECT_EQ(sum[i], wb[i]) << "word " << i;
  }
}
