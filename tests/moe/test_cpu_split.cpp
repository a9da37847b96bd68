// The cost model of --cpu-experts (src/moe/cpu_split.h), which the GPU's slot planner runs in the decode graph:
// off and all are fixed, auto picks the number of misses for the CPU that minimizes max(GPU path, CPU path),
// checked against a brute-force minimum in double over random costs, and on cases worked by hand; and the split of
// the CPU's measured call time into a fixed and a per-expert part.
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

TEST(CpuSplit, CallCostsFromTwoCalls) {
  // 27.6 µs of start and barriers + 20 µs an expert (an assumed split of the GPU host's 47.6, not a measurement):
  // one expert 47.6, four 107.6
  const CpuCallCosts c = cpu_call_costs(47600, 107600, 4);
  EXPECT_FLOAT_EQ(c.per_expert_ns, 20000);
  EXPECT_FLOAT_EQ(c.fixed_ns, 27600);
  // noise: J experts measured faster than one (an expert then costs 0, not less) or slower than J whole calls (an
  // expert costs at most a call)
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 45000, 4).per_expert_ns, 0);
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 45000, 4).fixed_ns, 50000);
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 400000, 4).per_expert_ns, 50000);
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 400000, 4).fixed_ns, 0);
  // one expert only (a model with one routed expert): all of it per expert, as before
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 0, 1).per_expert_ns, 50000);
  EXPECT_FLOAT_EQ(cpu_call_costs(50000, 0, 1).fixed_ns, 0);
  // what the split changes: 8 misses at 33.2 µs over PCIe, the CPU as above with a 14.5 µs round trip. Charging
  // 47.6 µs an expert sends 3 to the CPU (a 166.0 µs step by that charge); the split costs send 4 (132.8 µs)
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 8, {33200, 47600, 14500}), 3);
  EXPECT_EQ(cpu_split_count(CpuExperts::automatic, 8, {33200, c.per_expert_ns, 14500 + c.fixed_ns}), 4);
}

TEST(CpuSplit, Names) {
  EXPECT_STREQ(cpu_experts_name(CpuExperts::off), "off");
  EXPECT_STREQ(cpu_experts_name(CpuExperts::automatic), "auto");
  EXPECT_STREQ(cpu_experts_name(CpuExperts::all), "all");
}

// auto is wired only where one expert's whole CPU call, round trip included, beats that expert over PCIe: none of the
// H200 host's three loads did (its fixed part alone was 2 to 6 experts' copies), nor does a tie
TEST(CpuSplit, WiredOnlyWhereTheWholeCpuCallBeatsPcie) {
  EXPECT_FALSE(cpu_split_wired(CpuSplitCosts{33000, 46100, 73300}));
  EXPECT_FALSE(cpu_split_wired(CpuSplitCosts{33300, 22600, 187300}));  // cheaper per expert, still not wired
  EXPECT_FALSE(cpu_split_wired(CpuSplitCosts{1000, 400, 600}));
  EXPECT_TRUE(cpu_split_wired(CpuSplitCosts{1000, 400, 500}));
  EXPECT_TRUE(cpu_split_wired(CpuSplitCosts{1000, 400, 0}));
}

}  // namespace
}  // namespace hlwq
