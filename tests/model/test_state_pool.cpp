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

TEST(StatePool, ForkSharesFullBlocksByReference) {
  StatePool p({.max_seqs = 3, .kv_blocks = 6, .block_tokens = 4});
  const int32_t a = p.open(100);
  p.grow(a, 8);
  p.advance(a, 8);
  const int32_t b = p.open(100);
  p.fork(a, b);
  EXPECT_EQ(p.pos(b), 8);
  ASSERT_EQ(p.blocks(b).size(), 2u);
  EXPECT_EQ(p.blocks(b)[0], p.blocks(a)[0]);
  EXPECT_EQ(p.block_refs(p.blocks(a)[1]), 2);
  EXPECT_EQ(p.free_blocks(), 4);
  // each goes on into blocks of its own: the shared ones stay behind both positions
  EXPECT_EQ(p.blocks_needed(b, 9), 1);
  p.grow(b, 9);
  p.grow(a, 9);
  EXPECT_NE(p.blocks(a)[2], p.blocks(b)[2]);
  EXPECT_EQ(p.free_blocks(), 2);
  p.close(a);  // the shared blocks stay with b; a's own third block is free again
  EXPECT_EQ(p.free_blocks(), 3);
  EXPECT_EQ(p.block_refs(p.blocks(b)[0]), 1);
  p.close(b);
  EXPECT_EQ(p.free_blocks(), 6);
  // refused forks change nothing: mid-block source, non-empty target, short length cap, self
  const int32_t c = p.open(100), d = p.open(100), e = p.open(4);
  p.grow(c, 6);
  p.advance(c, 6);
  EXPECT_THROW(p.fork(c, d), Error);
  p.grow(c, 8);
  p.advance(c, 2);
  p.grow(d, 1);
  p.advance(d, 1);
  EXPECT_THROW(p.fork(c, d), Error);
  EXPECT_THROW(p.fork(c, e), Error);
  EXPECT_THROW(p.fork(c, c), Error);
  EXPECT_EQ(p.pos(e), 0);
  EXPECT_EQ(p.block_refs(p.blocks(c)[0]), 1);
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
