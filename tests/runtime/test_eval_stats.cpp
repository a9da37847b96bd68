// EvalStats against hand-computed figures: means, standard errors (llama-perplexity's sqrt(var/(N-1))),
// PPL's delta-method error, top-1 agreement's binomial error, and linear-interpolation quantiles.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/eval_stats.h"

using namespace hlwq;

TEST(EvalStats, PerplexityAndItsStandardError) {
  EvalStats s(false);
  for (double nll : {1.0, 2.0, 3.0, 4.0}) s.add({.nll = nll});
  // mean 2.5, population variance 1.25, se = sqrt(1.25 / 3)
  const double se = std::sqrt(1.25 / 3);
  EXPECT_DOUBLE_EQ(s.mean_nll().value, 2.5);
  EXPECT_NEAR(s.mean_nll().se, se, 1e-12);
  EXPECT_NEAR(s.ppl().value, std::exp(2.5), 1e-9);
  EXPECT_NEAR(s.ppl().se, std::exp(2.5) * se, 1e-9);
  EXPECT_EQ(s.n(), 4);
}

TEST(EvalStats, OnePositionHasNoError) {
  EvalStats s(false);
  s.add({.nll = 2.0});
  EXPECT_EQ(s.ppl().se, 0.0);
  EXPECT_NEAR(s.ppl().value, std::exp(2.0), 1e-12);
}

TEST(EvalStats, KlTop1DeltaPAndQuantiles) {
  EvalStats s(true);
  // KL 0..9, p_model - p_base alternating +-0.1 * i, agreement on 3 of 10
  for (int i = 0; i < 10; ++i)
    s.add({.nll = 1.0, .nll_base = 0.5, .kl = double(i), .p_model = 0.5 + (i % 2 ? 0.01 * i : -0.01 * i),
           .p_base = 0.5, .top1_agree = i < 3});
  EXPECT_DOUBLE_EQ(s.kl().value, 4.5);
  EXPECT_NEAR(s.kl().se, std::sqrt(8.25 / 9), 1e-12);  // population variance of 0..9 is 8.25
  EXPECT_DOUBLE_EQ(s.kl_quantile(0.5), 4.5);
  EXPECT_NEAR(s.kl_quantile(0.9), 8.1, 1e-12);
  EXPECT_NEAR(s.kl_quantile(0.99), 8.91, 1e-12);
  EXPECT_DOUBLE_EQ(s.kl_quantile(1.0), 9.0);
  EXPECT_DOUBLE_EQ(s.kl_quantile(0.0), 0.0);
  EXPECT_DOUBLE_EQ(s.top1().value, 0.3);
  EXPECT_NEAR(s.top1().se, std::sqrt(0.3 * 0.7 / 9), 1e-12);
  EXPECT_NEAR(s.ln_ppl_ratio().value, 0.5, 1e-12);
  EXPECT_NEAR(s.ln_ppl_ratio().se, 0.0, 1e-12);
  EXPECT_NEAR(s.base_ppl().value, std::exp(0.5), 1e-12);
  // delta p: 0, +.01, -.02, +.03, -.04, +.05, -.06, +.07, -.08, +.09 -> mean 0.005
  EXPECT_NEAR(s.delta_p().value, 0.005, 1e-12);
  EXPECT_NEAR(s.delta_p_quantile(0.0), -0.08, 1e-12);
  EXPECT_NEAR(s.delta_p_quantile(1.0), 0.09, 1e-12);
  double sq = 0;
  for (int i = 0; i < 10; ++i) sq += 0.0001 * i * i;
  EXPECT_NEAR(s.rms_delta_p(), std::sqrt(sq / 10), 1e-12);
  EXPECT_EQ(s.running_text().rfind("KL 4.5000 ± ", 0), 0u) << s.running_text();
}
