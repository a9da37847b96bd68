// PrefixCache's choice of entry: the longest cached token list that is a strict prefix of the prompt, taken out
// of the cache (never shared), and LRU eviction. Sequences here are empty handles: the engine's use with a real
// model is covered by the live test (a continued chat turn gives the same greedy answer as a full prefill).
#include <gtest/gtest.h>

#include "server/prefix_cache.h"

namespace hlwq::server {
namespace {

TEST(PrefixCache, TakesTheLongestStrictPrefixOnce) {
  PrefixCache c;
  c.put({1, 2}, Sequence());
  c.put({1, 2, 3, 4}, Sequence());
  c.put({1, 2, 3, 4, 5, 6}, Sequence());
  c.put({7}, Sequence());
  EXPECT_FALSE(c.take({1, 2}));      // equal is not a strict prefix: a token must be left to produce logits
  EXPECT_FALSE(c.take({9, 1, 2, 3}));
  auto h = c.take({1, 2, 3, 4, 5});  // {1,2,3,4,5,6} is longer than the prompt
  ASSERT_TRUE(h);
  EXPECT_EQ(h->reused, 4);
  EXPECT_EQ(c.size(), 3u);
  h = c.take({1, 2, 3, 4, 5});  // the {1,2,3,4} entry was taken: next best
  ASSERT_TRUE(h);
  EXPECT_EQ(h->reused, 2);
  EXPECT_FALSE(c.take({1, 3}));
  EXPECT_EQ(c.size(), 2u);
}

TEST(PrefixCache, EvictsLeastRecentlyStored) {
  PrefixCache c;
  c.put({1}, Sequence());
  c.put({2}, Sequence());
  c.put({3}, Sequence());
  ASSERT_TRUE(c.evict_lru());
  EXPECT_FALSE(c.take({1, 0}));
  EXPECT_TRUE(c.take({2, 0}));
  ASSERT_TRUE(c.evict_lru());
  EXPECT_FALSE(c.take({3, 0}));
  EXPECT_FALSE(c.evict_lru());
}

}  // namespace
}  // namespace hlwq::server
