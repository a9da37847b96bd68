// The GEMM kernels' launch shape (gemm_launch.h), host only, run everywhere: decode launches fit one wave of resident
// blocks with one round of weight loads per warp; launches too large for that keep the earlier rule.
#include <gtest/gtest.h>

#include <random>

#include "backend/cuda/gemm_launch.h"
#include "core/error.h"

namespace hlwq {
namespace {

using cuda::gemm_launch_shape;
using cuda::GemmLaunchProblem;
using cuda::GemmLaunchShape;

constexpr int kSms = 132;  // H200
auto two_per_sm = [](size_t) { return 2; };  // the INT4 kernels at ~127 registers a thread, 256 threads a block

// The MoE gate_up at one token on Qwen3.6 shapes: 9 live tiles of 11 planned, 1024 rows (32 groups of a gate and an
// up tile), 2048 columns (16 k-units), 4 k-units per load round. The earlier rule (split to ≥ 16 warps per SM) took
// split 8: 32 × 11 = 352 blocks for 264 resident places, a second wave.
TEST(CudaGemmLaunch, MoeGateUpAtOneTokenFitsOneWave) {
  const GemmLaunchShape s = gemm_launch_shape(GemmLaunchProblem{32, 16, 4, 11, kSms, 32 << 10}, two_per_sm);
  EXPECT_TRUE(s.one_wave);
  EXPECT_EQ(s.split, 4);  // 4 warps × 4 k-units = the 16 k-units in one round
  EXPECT_EQ(s.blocks, 16);
  EXPECT_LE(s.blocks * 11, kSms * 2);
  EXPECT_FALSE(s.x_smem);  // staging would put an L2 round trip before the weight loads
}

TEST(CudaGemmLaunch, MoeDownAtOneTokenFitsOneWave) {  // 2048 rows, 512 columns (4 k-units), 8 per round
  const GemmLaunchShape s = gemm_launch_shape(GemmLaunchProblem{128, 4, 8, 11, kSms, 8 << 10}, two_per_sm);
  EXPECT_TRUE(s.one_wave);
  EXPECT_EQ(s.split, 1);
  EXPECT_EQ(s.blocks, 16);
}

// The light kernel of the grouped launches (gemm.cu: 8 uint4 in flight, ≤ 85 registers, 3 blocks per SM): gate_up
// has 2 k-units per round, so one round needs every warp of a block on one group; down takes split 2.
TEST(CudaGemmLaunch, LightGroupedKernelAtOneToken) {
  auto three_per_sm = [](size_t) { return 3; };
  GemmLaunchShape s = gemm_launch_shape(GemmLaunchProblem{32, 16, 2, 11, kSms, 32 << 10}, three_per_sm);
  EXPECT_TRUE(s.one_wave);
  EXPECT_EQ(s.split, 8);
  EXPECT_EQ(s.blocks, 32);  // 352 blocks of 396 places
  s = gemm_launch_shape(GemmLaunchProblem{128, 4, 4, 11, kSms, 8 << 10}, three_per_sm);
  EXPECT_TRUE(s.one_wave);
  EXPECT_EQ(s.split, 2);
  EXPECT_EQ(s.blocks, 32);
  // four tokens (41 planned tiles): no one-wave shape with one round per warp, so the standard kernel runs
  s = gemm_launch_shape(GemmLaunchProblem{32, 16, 2, 41, kSms, 32 << 10}, three_per_sm);
  EXPECT_FALSE(s.one_wave);
}

TEST(CudaGemmLaunch, DenseDecodeTakesTheLargestSplitThatFits) {
  // 2048→8192 (512 groups, 16 k-units, 8 per round): split 4 is 256 blocks (fits 264), split 8 would be 512
  GemmLaunchShape s = gemm_launch_shape(GemmLaunchProblem{512, 16, 8, 1, kSms, 32 << 10}, two_per_sm);
  EXPECT_TRUE(s.one_wave);
  EXPECT_EQ(s.split, 4);
  EXPECT_EQ(s.blocks, 256);
  // 2048→512 (32 groups): every warp of a block on one group
  s = gemm_launch_shape(GemmLaunchProblem{32, 16, 8, 1, kSms, 32 << 10}, two_per_sm);
  EXPECT_EQ(s.split, 8);
  EXPECT_EQ(s.blocks, 32);
  // no warp without a k-unit: 512→2048 has 4 k-units, so at most 4 warps split a group
  s = gemm_launch_shape(GemmLaunchProblem{128, 4, 8, 1, kSms, 8 << 10}, two_per_sm);
  EXPECT_EQ(s.split, 4);
}

TEST(CudaGemmLaunch, LargeLaunchesKeepTheEarlierRule) {
  // a prefill chunk's grouped gate_up: 1,409 tiles cannot be one wave at any split
  GemmLaunchShape s = gemm_launch_shape(GemmLaunchProblem{32, 16, 4, 1409, kSms, 32 << 10}, two_per_sm);
  EXPECT_FALSE(s.one_wave);
  EXPECT_EQ(s.split, 4);   // one load round per warp, already ≥ 16 warps per SM
  EXPECT_EQ(s.blocks, 1);  // at most 4 blocks per SM over all tiles: ⌈528 / 1409⌉
  EXPECT_TRUE(s.x_smem);
  // the bf16 lm_head at one token (7,760 groups of two row tiles, 16 k-units, 1 per round)
  s = gemm_launch_shape(GemmLaunchProblem{7760, 16, 1, 1, kSms, 32 << 10}, two_per_sm);
  EXPECT_FALSE(s.one_wave);
  EXPECT_EQ(s.split, 8);
  EXPECT_EQ(s.blocks, kSms * 4);  // persistent
  EXPECT_FALSE(s.x_smem);         // split 8: each warp reads only its own k-units of x
}

// Whatever the problem: a one-wave shape is resident at once, has one load round per warp, covers every group in one
// pass, and is the largest such split (twice it would not fit, or would leave warps without a k-unit); otherwise no
// split of one round per warp would have fit. Half the draws are decode-sized so that both branches are exercised,
// and the test counts that they were.
TEST(CudaGemmLaunch, PropertiesOverRandomProblems) {
  std::mt19937 rng(7);
  int one_wave = 0, fallback = 0;
  for (int it = 0; it < 20000; ++it) {
    const bool small = it % 2 == 0;
    GemmLaunchProblem p;
    p.n_groups = 1 + int64_t(rng() % (small ? 600 : 8000));
    p.ku = 1 + int(rng() % 64);
    p.units_per_round = 1 << (rng() % 4);
    p.tiles = 1 + int64_t(rng() % (small ? 16 : 2000));
    p.sms = small ? 100 + int(rng() % 41) : 1 + int(rng() % 200);
    p.x_bytes = size_t(p.ku) * 2048;
    const int bpsm = small ? 1 + int(rng() % 4) : int(rng() % 5);  // 0: the kernel does not fit (fallback)
    const GemmLaunchShape s = gemm_launch_shape(p, [&](size_t) { return bpsm; });
    ASSERT_TRUE(s.split == 1 || s.split == 2 || s.split == 4 || s.split == 8);
    ASSERT_GE(s.blocks, 1);
    const int64_t resident = int64_t(p.sms) * bpsm;
    auto blocks_of = [&](int split) { return (p.n_groups + 8 / split - 1) / (8 / split); };
    int smin = 1;  // one load round per warp
    while (smin < 8 && smin * p.units_per_round < p.ku) smin *= 2;
    if (s.one_wave) {
      ++one_wave;
      ASSERT_EQ(s.blocks, blocks_of(s.split));  // every group in the single pass
      ASSERT_LE(s.blocks * p.tiles, resident);
      ASSERT_TRUE(s.split * p.units_per_round >= p.ku || s.split == 8);
      ASSERT_TRUE(s.split == smin || s.split <= p.ku);
      ASSERT_FALSE(s.x_smem);
      if (s.split < 8) {
        const int up = 2 * s.split;
        ASSERT_TRUE(up > p.ku || blocks_of(up) * p.tiles > resident)
            << "split " << up << " would also fit: groups " << p.n_groups << " ku " << p.ku << " tiles " << p.tiles;
      }
    } else {
      ++fallback;
      ASSERT_GE(s.split, smin);
      ASSERT_GT(blocks_of(smin) * p.tiles, resident)
          << "a one-wave split was skipped: groups " << p.n_groups << " tiles " << p.tiles;
    }
  }
  EXPECT_GT(one_wave, 1000);  // 1,525 with this seed
  EXPECT_GT(fallback, 2000);
}

TEST(CudaGemmLaunch, RefusesAnEmptyProblem) {
  EXPECT_THROW(gemm_launch_shape(GemmLaunchProblem{0, 16, 4, 1, kSms, 0}, two_per_sm), Error);
  EXPECT_THROW(gemm_launch_shape(GemmLaunchProblem{32, 16, 4, 0, kSms, 0}, two_per_sm), Error);
}

}  // namespace
}  // namespace hlwq
