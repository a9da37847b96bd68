// PrefetchArbiter (--moe-prefetch auto): it keeps whichever way the timed steps say is faster, per batch size;
// keeps the prefetch on a tie within the margin; holds a choice for kHold timed steps and probes again; ignores
// untimed steps and samples of the other way; and one slow outlier in a probe does not flip its choice.
#include <gtest/gtest.h>

#include "moe/prefetch_arbiter.h"

namespace hlwq {
namespace {

using A = PrefetchArbiter;

// Runs n steps of T tokens through the arbiter with device times on_us / off_us for the two ways.
void run(A& a, int64_t T, int n, double on_us, double off_us) {
  for (int i = 0; i < n; ++i) {
    const bool p = a.choose(T);
    a.record(T, p, p ? on_us : off_us);
  }
}

TEST(PrefetchArbiter, KeepsTheFasterWay) {
  A slow_prefetch;
  run(slow_prefetch, 1, 2 * A::kProbe, 3000, 2600);
  EXPECT_FALSE(slow_prefetch.choose(1));
  EXPECT_FALSE(slow_prefetch.held(1));
  EXPECT_EQ(slow_prefetch.decided_off(), 1);
  A fast_prefetch;
  run(fast_prefetch, 1, 2 * A::kProbe, 2600, 3000);
  EXPECT_TRUE(fast_prefetch.choose(1));
  EXPECT_EQ(fast_prefetch.decided_on(), 1);
}

TEST(PrefetchArbiter, ProbesWithThenWithoutThenDecides) {
  A a;
  EXPECT_TRUE(a.choose(1));
  EXPECT_TRUE(a.held(1));  // before a decision: on
  run(a, 1, A::kProbe, 3000, 2000);
  EXPECT_FALSE(a.choose(1));  // now the steps without
  EXPECT_TRUE(a.held(1));     // nothing decided yet
  run(a, 1, A::kProbe - 1, 3000, 2000);
  EXPECT_EQ(a.decided_off(), 0);
  run(a, 1, 1, 3000, 2000);
  EXPECT_EQ(a.decided_off(), 1);
}

TEST(PrefetchArbiter, TieWithinTheMarginKeepsThePrefetch) {
  A a;
  run(a, 1, 2 * A::kProbe, 3000, 3000 * (1 - A::kMargin / 2));
  EXPECT_TRUE(a.held(1));
  A b;  // just past the margin: off
  run(b, 1, 2 * A::kProbe, 3000, 3000 * (1 - 2 * A::kMargin));
  EXPECT_FALSE(b.held(1));
}

TEST(PrefetchArbiter, HoldsThenProbesAgain) {
  A a;
  EXPECT_TRUE(a.probing(1));
  run(a, 1, 2 * A::kProbe, 3000, 2000);  // off
  EXPECT_FALSE(a.probing(1));  // held steps are not timed
  run(a, 1, A::kHold - 1, 3000, 2000);
  EXPECT_FALSE(a.choose(1));
  run(a, 1, 1, 3000, 2000);
  EXPECT_TRUE(a.choose(1));   // the next probe starts with the prefetch ...
  EXPECT_FALSE(a.held(1));    // ... while the choice in force stays
  EXPECT_TRUE(a.probing(1));
  run(a, 1, 2 * A::kProbe, 2000, 3000);  // the routing drifted: now the prefetch pays
  EXPECT_TRUE(a.held(1));
  EXPECT_EQ(a.decided_off(), 1);
  EXPECT_EQ(a.decided_on(), 1);
}

TEST(PrefetchArbiter, BatchSizesAreIndependent) {
  A a;
  run(a, 1, 2 * A::kProbe, 3000, 2000);
  run(a, 4, 2 * A::kProbe, 2000, 3000);
  EXPECT_FALSE(a.held(1));
  EXPECT_TRUE(a.held(4));
  EXPECT_TRUE(a.choose(16));  // a size never seen starts probing with the prefetch
}

TEST(PrefetchArbiter, UntimedStepsAndTheOtherWayAreIgnored) {
  A a;
  for (int i = 0; i < 100; ++i) (void)a.choose(1);  // steps that recorded graphs: no sample
  EXPECT_TRUE(a.choose(1));
  a.record(1, false, 1);  // a sample of the way not chosen
  run(a, 1, A::kProbe, 3000, 2000);
  EXPECT_FALSE(a.choose(1));  // exactly kProbe samples with the prefetch moved it on
  run(a, 1, A::kProbe, 3000, 2000);
  EXPECT_FALSE(a.held(1));
}

TEST(PrefetchArbiter, OneOutlierDoesNotFlipTheChoice) {
  A a;
  // with the prefetch clearly faster, but one step of the probe with it 10× slow (a page fault, a context switch)
  for (int i = 0; i < 2 * A::kProbe; ++i) {
    const bool p = a.choose(1);
    a.record(1, p, p ? (i == 3 ? 26000 : 2600) : 3000);
  }
  EXPECT_TRUE(a.held(1));
}

TEST(PrefetchArbiter, ModeNames) {
  for (PrefetchMode m : {PrefetchMode::off, PrefetchMode::on, PrefetchMode::automatic})
    EXPECT_EQ(parse_prefetch_mode(prefetch_mode_name(m)), m);
  EXPECT_FALSE(parse_prefetch_mode("yes").has_value());
  EXPECT_FALSE(parse_prefetch_mode("").has_value());
}

}  // namespace
}  // namespace hlwq
