// StatePool bookkeeping on its own: slots, block tables, the free list, poisoning.
#include <gtest/gtest.h>

#include "core/error.h"
#include "model/state_pool.h"

namespace hlwq {
namespace {

TEST(StatePool, BlocksAreSharedAndReturned) {
  StatePool p({.max_seqs = 2, .kv_blocks = 5, .block_tokens = 4});
  const int32_t a = p.open(100), b = p.open(100);
  EXPECT_EQ(p.blocks_needed(a, 9), 3);  // 9 positions need 3 blocks of 4
  p.grow(a, 9);
  EXPECT_EQ(p.free_blocks(), 2);
  EXPECT_EQ(p.blocks_needed(a, 12), 0);
  EXPECT_EQ(p.blocks_needed(b, 12), 3);
  EXPECT_THROW(p.grow(b, 12), Error);  // 3 needed, 2 free: refused, nothing taken
  EXPECT_EQ(p.free_blocks(), 2);
  EXPECT_TRUE(p.blocks(b).empty());
  p.close(a);
  EXPECT_EQ(p.free_blocks(), 5);
  p.grow(b, 12);
  EXPECT_EQ(p.blocks(b).size(), 3u);
}

TEST(StatePool, SlotsAndPoison) {
  StatePool p({.max_seqs = 1, .kv_blocks = 2, .block_tokens = 16});
  const int32_t a = p.open(32);
  EXPECT_THROW(p.open(32), Error);
  p.advance(a, 5);
  EXPECT_EQ(p.pos(a), 5);
  p.poison(a, "boom");
  EXPECT_THROW(p.check_usable(a), Error);
  p.reset(a);
  EXPECT_NO_THROW(p.check_usable(a));
  EXPECT_EQ(p.pos(a), 0);
  p.close(a);
  EXPECT_THROW(p.check_usable(a), Error);
  EXPECT_THROW(p.pos(7), Error);
  EXPECT_THROW(StatePool({.max_seqs = 0, .kv_blocks = 1, .block_tokens = 1}), Error);
}

}  // namespace
}  // namespace hlwq
