// Progress's ETA: remaining amount over measured throughput, per kind of work, never a guess before a kind
// has been measured.
#include <gtest/gtest.h>

#include "core/progress.h"

using hlwq::Progress;

TEST(Progress, EtaPerKindFromMeasuredThreadSeconds) {
  Progress p("quantize", "tensors", 10, 2000, nullptr);
  p.expect_kind(0, 1000, 2);  // copied bytes
  p.expect_kind(1, 1000, 2);  // quantized bytes
  EXPECT_LT(p.eta_s(), 0) << "nothing measured yet";
  p.add(1, 500, 0, 0.5);  // copying: 1 ms per byte-thread
  EXPECT_LT(p.eta_s(), 0) << "quantizing not measured yet: no guess";
  p.add(1, 100, 1, 10.0);  // quantizing: 100 ms per byte-thread
  // (500 B x 0.001 s + 900 B x 0.1 s) / 2 threads
  EXPECT_NEAR(p.eta_s(), (500 * 0.001 + 900 * 0.1) / 2, 1e-9);
  p.add(1, 500, 0, 0.5);
  p.add(1, 900, 1, 90.0);
  EXPECT_NEAR(p.eta_s(), 0.0, 1e-12);
}

TEST(Progress, EtaOfOneKindIsAmountOverWallTime) {
  Progress p("eval", "windows", 4, 400, nullptr, Progress::Amount::tokens);
  EXPECT_LT(p.eta_s(), 0);
  p.add(4, 400);
  EXPECT_EQ(p.eta_s(), 0.0);
}
