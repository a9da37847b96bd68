// plan_stream_rounds (moe/layer_stream.h): rounds are contiguous tile ranges that together cover every live tile
// once, stage each non-resident routed expert exactly once and never more than S per round, leave resident
// experts and shared parts unstaged, and merge contiguous copies; a slot plan out of order is refused.
// plan_stream_admission: the cache's LRU rule applied to a streamed step.
#include <gtest/gtest.h>

#include <random>
#include <set>

#include "core/error.h"
#include "moe/layer_stream.h"

namespace hlwq {
namespace {

// A slot plan as moe_route builds it: ⌈count/8⌉ tiles per matrix in ascending order, then `unused` −1 tiles.
std::vector<int> tiles_of(const std::vector<int>& counts, int unused) {
  std::vector<int> t;
  for (size_t m = 0; m < counts.size(); ++m)
    for (int i = 0; i < (counts[m] + 7) / 8; ++i) t.push_back(int(m));
  t.insert(t.end(), size_t(unused), -1);
  return t;
}

TEST(LayerStream, SmallExample) {
  // E = 6 routed experts + 1 shared part (matrix 6); experts 1 and 4 resident; S = 2
  const std::vector<int> tiles = tiles_of({9, 0, 20, 8, 3, 17, 40}, 3);  // tiles: 0 0 | 2 2 2 | 3 | 4 | 5 5 5 | 6×5
  const std::vector<int> slot{-1, 0, -1, -1, 1, -1};
  const auto r = plan_stream_rounds(tiles, slot, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].first_tile, 0);
  EXPECT_EQ(r[0].n_tiles, 5);  // experts 0 and 2
  EXPECT_EQ(r[0].staged, (std::vector<int>{0, 2}));
  ASSERT_EQ(r[0].copies.size(), 2u);  // 0 and 2 are not adjacent ids: two copies
  EXPECT_EQ(r[1].first_tile, 5);
  EXPECT_EQ(r[1].n_tiles, 15 - 5);  // 3, 4 (resident), 5, the shared part; the −1 tiles are left out
  EXPECT_EQ(r[1].staged, (std::vector<int>{3, 5}));
  EXPECT_EQ(r[1].resident, 1);
  ASSERT_EQ(r[1].copies.size(), 2u);
}

TEST(LayerStream, AdjacentExpertsCrossAsOneCopy) {
  const std::vector<int> tiles = tiles_of({8, 8, 8, 8, 8}, 0);
  const std::vector<int> slot(5, -1);
  const auto r = plan_stream_rounds(tiles, slot, 3);
  ASSERT_EQ(r.size(), 2u);
  ASSERT_EQ(r[0].copies.size(), 1u);
  EXPECT_EQ(r[0].copies[0].expert, 0);
  EXPECT_EQ(r[0].copies[0].slot, 0);
  EXPECT_EQ(r[0].copies[0].count, 3);
  ASSERT_EQ(r[1].copies.size(), 1u);
  EXPECT_EQ(r[1].copies[0].expert, 3);
  EXPECT_EQ(r[1].copies[0].slot, 0);
  EXPECT_EQ(r[1].copies[0].count, 2);
}

TEST(LayerStream, EverythingResidentIsOneRoundWithoutCopies) {
  const std::vector<int> tiles = tiles_of({16, 1, 0, 30}, 2);
  const auto r = plan_stream_rounds(tiles, std::vector<int>{2, 0, -1, 1}, 1);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].staged.empty());
  EXPECT_EQ(r[0].n_tiles, 2 + 1 + 4);
  EXPECT_EQ(r[0].resident, 3);
  EXPECT_TRUE(plan_stream_rounds(std::vector<int>{-1, -1}, std::vector<int>{-1}, 4).empty());
}

// Random plans: the invariants of the header, against a direct count.
TEST(LayerStream, RandomPlansKeepTheInvariants) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int E = 1 + int(rng() % 64), shared = int(rng() % 3), S = 1 + int(rng() % 9);
    std::vector<int> counts(static_cast<size_t>(E + shared)), slot(static_cast<size_t>(E));
    for (int& c : counts) c = rng() % 3 == 0 ? 0 : int(rng() % 40);
    for (int& s : slot) s = rng() % 4 == 0 ? int(rng() % 8) : -1;
    const std::vector<int> tiles = tiles_of(counts, int(rng() % 5));
    const auto rounds = plan_stream_rounds(tiles, slot, S);
    int64_t next = 0;
    std::multiset<int> staged;
    int resident = 0;
    for (const StreamRound& r : rounds) {
      EXPECT_EQ(r.first_tile, next);
      EXPECT_GT(r.n_tiles, 0);
      next += r.n_tiles;
      EXPECT_LE(int(r.staged.size()), S);
      resident += r.resident;
      std::vector<int> from_copies;
      for (const StreamCopyRun& c : r.copies)
        for (int i = 0; i < c.count; ++i) {
          EXPECT_EQ(c.slot + i, int(from_copies.size()));
          from_copies.push_back(c.expert + i);
        }
      EXPECT_EQ(from_copies, r.staged);
      for (int e : r.staged) {
        staged.insert(e);
        // the expert's tiles all lie inside the round that stages it
        for (size_t t = 0; t < tiles.size(); ++t) {
          if (tiles[t] != e) continue;
          EXPECT_TRUE(int64_t(t) >= r.first_tile && int64_t(t) < r.first_tile + r.n_tiles);
        }
      }
    }
    int64_t live = 0, want_resident = 0;
    std::multiset<int> want;
    for (int c : counts) live += (c + 7) / 8;
    for (int m = 0; m < E; ++m)
      if (counts[size_t(m)] > 0 && slot[size_t(m)] < 0) want.insert(m);
      else if (counts[size_t(m)] > 0) ++want_resident;
    EXPECT_EQ(next, live);
    EXPECT_EQ(staged, want);
    EXPECT_EQ(resident, want_resident);
  }
}

// Admission: the resident experts used are touched (pinned); staged ones, most tiles first, fill empty slots in
// ascending order, then evict by LRU, never a pinned slot; once every slot is pinned the rest stay unadmitted.
TEST(LayerStream, AdmissionIsTheCachesLruRule) {
  // E = 6; tiles: expert 0 ×1, 1 ×3, 2 ×2, 4 ×3, 5 ×1; expert 3 unused. Cache of 4 slots: slot 0 holds 3 (used 5),
  // slot 1 holds 4 (used 9, needed: pinned), slot 2 empty, slot 3 holds 0 (used 2, needed: pinned).
  const std::vector<int> tiles = tiles_of({8, 24, 16, 0, 24, 8}, 1);
  const std::vector<int> expert_slot{3, -1, -1, 0, 1, -1}, slot_expert{3, 4, -1, 0};
  const std::vector<long long> used{5, 9, 0, 2};
  const StreamAdmission a = plan_stream_admission(tiles, expert_slot, slot_expert, used);
  EXPECT_EQ(a.touch, (std::vector<std::pair<int, int>>{{0, 3}, {4, 1}}));
  // staged by tiles: 1 (3 tiles), 2 (2), 5 (1); 1 takes the empty slot 2, 2 evicts the LRU unpinned slot 0 (expert
  // 3), then every slot is pinned and 5 stays out
  EXPECT_EQ(a.admit, (std::vector<std::pair<int, int>>{{1, 2}, {2, 0}}));

  // negative control: with a larger cache every staged expert gets a slot, the empty ones first
  const std::vector<int> slot_expert6{3, 4, -1, 0, -1, -1};
  const std::vector<long long> used6{5, 9, 0, 2, 0, 0};
  const StreamAdmission b = plan_stream_admission(tiles, expert_slot, slot_expert6, used6);
  EXPECT_EQ(b.admit, (std::vector<std::pair<int, int>>{{1, 2}, {2, 4}, {5, 5}}));
  // a residency map that contradicts the slots is refused
  EXPECT_THROW(plan_stream_admission(tiles, std::vector<int>{3, -1, -1, 0, 2, -1}, slot_expert, used), Error);
}

TEST(LayerStream, RefusesAPlanOutOfOrder) {
  const std::vector<int> slot(4, -1);
  EXPECT_THROW(plan_stream_rounds(std::vector<int>{0, 2, 1}, slot, 2), Error);
  EXPECT_THROW(plan_stream_rounds(std::vector<int>{0, -1, 1}, slot, 2), Error);
  EXPECT_THROW(plan_stream_rounds(std::vector<int>{0, -2}, slot, 2), Error);
  EXPECT_THROW(plan_stream_rounds(std::vector<int>{0, 1}, slot, 0), Error);
  EXPECT_NO_THROW(plan_stream_rounds(std::vector<int>{0, 0, 1, 3, -1}, slot, 2));
}

}  // namespace
}  // namespace hlwq
