// The cost model of --cpu-experts (src/moe/cpu_split.h), which the GPU's slot planner runs in the decode graph:
// off and all are fixed, auto picks the number of misses for the CPU that minimizes max(GPU path, CPU path),
// checked against a brute-force minimum in double over random costs, and on cases worked by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "moe/cpu_split.h"

namespace hlwq {
namespace {

double step_time(int m, int n, const CpuSplitCosts& c) {
  const double g = double(m - n) * c.pcie_ns, k = n > 0 ? c.cpu_fixed_ns + double(n) * c.cpu_ns : 0.0;
  return std::max(g, k);
}

TEST(CpuSplit, OffAndAllAreFixed) {
  const CpuSplitCosts c{1000, 1, 0};
  for (int m : {0, 1, 7, 256}) {
    EXPECT_EQ(cpu_split_count(CpuExperts::off, m, c), 0);
    EXPECT_EQ(cpu_split_count(CpuExperts::all, m, c), m);
  }
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 0, c), 0);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, -3, c), 0);
}

TEST(CpuSplit, AutoCasesByHand) {
  // equal speeds, no round trip: half each (the smaller half to the CPU on an odd count: ties prefer the GPU)
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 8, {100, 100, 0}), 4);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 7, {100, 100, 0}), 3);
  // a CPU 3x slower than PCIe: a quarter
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 8, {300, 900, 0}), 2);
  // a round trip longer than copying every miss: nothing to the CPU
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 4, {10, 1, 100}), 0);
  // a free CPU: everything
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 5, {100, 0, 0}), 5);
  // no PCIe cost (every miss free on the GPU): nothing
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 5, {0, 10, 0}), 0);
  // the costs the CUDA tests pin (a CPU 2.5x faster than PCIe): a lone miss to the CPU, 2 of 3, 3 of 4
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 1, {1000, 400, 0}), 1);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 2, {1000, 400, 0}), 2);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 3, {1000, 400, 0}), 2);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 4, {1000, 400, 0}), 3);
}

TEST(CpuSplit, AutoMinimizesTheStepTime) {
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> ns(0.f, 5000.f);
  std::uniform_int_distribution<int> misses(0, 64);
  for (int i = 0; i < 2000; ++i) {
    const CpuSplitCosts c{ns(rng), ns(rng), ns(rng) * 4};
    const int m = misses(rng), n = cpu_split_count(CpuExperts::automatic, m, c);
    ASSERT_GE(n, 0);
    ASSERT_LE(n, m);
    double best = step_time(m, 0, c);
    for (int k = 1; k <= m; ++k) best = std::min(best, step_time(m, k, c));
    EXPECT_NEAR(step_time(m, n, c), best, 1e-4 * best + 1e-3) << "case " << i << ": " << n << " of " << m;
  }
}

TEST(CpuSplit, Names) {
  EXPECT_STREQ(cpu_experts_name(CpuExperts::off), "off");
  EXPECT_STREQ(cpu_experts_name(CpuExperts::automatic), "auto");
  EXPECT_STREQ(cpu_experts_name(CpuExperts::all), "all");
}

}  // namespace
}  // namespace hlwq
