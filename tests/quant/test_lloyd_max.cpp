// Lloyd-Max tables: published MSE (SPEC §4, 4 significant digits), published positive halves, the seed's
// unconverged table, the optimal uniform grids, optimality by perturbation, and a sampled cross-check of the
// closed-form MSE.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/error.h"
#include "quant/lloyd_max.h"

using namespace hlwq;

namespace {

// |x − ref| within half a unit of ref's 4th significant digit.
void expect_4_sig(double x, double ref, const char* what) {
  const double unit = std::pow(10.0, std::floor(std::log10(std::fabs(ref))) - 3);
  EXPECT_LE(std::fabs(x - ref), 0.5 * unit) << what << ": " << x << " vs " << ref;
}

double mse(const std::vector<float>& t) { return gaussian_quant_mse(std::span<const float>(t)); }

}  // namespace

TEST(LloydMax, ConvergedMseMatchesSpec) {
  expect_4_sig(mse(lloyd_max_table(2)), 0.1175, "2 bits");
  expect_4_sig(mse(lloyd_max_table(3)), 0.03455, "3 bits");
  expect_4_sig(mse(lloyd_max_table(4)), 0.009501, "4 bits");
  expect_4_sig(mse(lloyd_max_table(5)), 0.002505, "5 bits");
}

TEST(LloydMax, PositiveHalvesMatchSpec) {
  const std::vector<double> h4 = {0.128395, 0.388048, 0.656759, 0.942340, 1.256231, 1.618046, 2.069017, 2.732590};
  const std::vector<double> h5 = {0.065890, 0.198052, 0.331378, 0.466700, 0.604934, 0.747136, 0.894565, 1.048783,
                                  1.211804, 1.386340, 1.576228, 1.787233, 2.028728, 2.317739, 2.691120, 3.260732};
  for (const auto& [bits, half] : {std::pair{4, h4}, std::pair{5, h5}}) {
    const auto& t = lloyd_max_table(bits);
    ASSERT_EQ(t.size(), 2 * half.size());
    for (size_t i = 0; i < half.size(); ++i) {
      EXPECT_NEAR(t[half.size() + i], half[i], 1e-5) << bits << " bits, +" << i;
      EXPECT_NEAR(t[half.size() - 1 - i], -half[i], 1e-5) << bits << " bits, -" << i;
    }
  }
}

TEST(LloydMax, SeedTableIsUnconverged) {
  const auto& seed = seed_q5_table();
  ASSERT_EQ(seed.size(), 32u);
  EXPECT_FLOAT_EQ(seed[16], kSeedQ5PositiveHalf[0]);
  EXPECT_FLOAT_EQ(seed[0], -kSeedQ5PositiveHalf[15]);
  expect_4_sig(mse(seed), 0.002923, "seed 5 bits");
  EXPECT_GT(mse(seed), mse(lloyd_max_table(5)) * 1.1);
}

TEST(LloydMax, UniformGridsMatchSpecAndAreWorse) {
  const double ref[] = {0.1188, 0.03744, 0.01154, 0.003495};
  for (int bits = 2; bits <= 5; ++bits) {
    const double u = mse(gaussian_uniform_table(bits));
    expect_4_sig(u, ref[bits - 2], "uniform");
    EXPECT_GT(u, mse(lloyd_max_table(bits))) << bits;
  }
}

TEST(LloydMax, AllWidthsSymmetricAscendingAndLocallyOptimal) {
  double prev = 1.0;
  for (int bits = kLloydMaxMinBits; bits <= kLloydMaxMaxBits; ++bits) {
    const auto& t = lloyd_max_table(bits);
    ASSERT_EQ(t.size(), size_t(1) << bits);
    for (size_t i = 0; i < t.size(); ++i) {
      if (i > 0) {
        ASSERT_LT(t[i - 1], t[i]) << bits;
      }
      ASSERT_NEAR(t[i], -t[t.size() - 1 - i], 1e-6) << bits;
    }
    // Optimality: moving any one centroid (in double, from the exact solution) raises the MSE.
    std::vector<double> d = lloyd_max_compute(bits);
    const double best = gaussian_quant_mse(std::span<const double>(d));
    EXPECT_LT(best, prev) << bits;
    prev = best;
    for (size_t i = 0; i < d.size(); i += 7) {
      for (double delta : {-1e-3, 1e-3}) {
        std::vector<double> p = d;
        p[i] += delta;
        if ((i > 0 && p[i] <= p[i - 1]) || (i + 1 < p.size() && p[i] >= p[i + 1])) continue;
        EXPECT_GT(gaussian_quant_mse(std::span<const double>(p)), best) << bits << " bits, centroid " << i;
      }
    }
  }
}

TEST(LloydMax, ClosedFormMseAgreesWithSampling) {
  const auto& t = lloyd_max_table(4);
  std::mt19937_64 rng(42);
  std::normal_distribution<double> nd;
  double acc = 0;
  const int n = 400000;
  for (int k = 0; k < n; ++k) {
    const double x = nd(rng);
    double best = 1e300;
    for (float c : t) best = std::min(best, (x - c) * (x - c));
    acc += best;
  }
  EXPECT_NEAR(acc / n, mse(t), 0.03 * mse(t));
}

TEST(LloydMax, TablesAreCachedAndWidthIsChecked) {
  EXPECT_EQ(&lloyd_max_table(5), &lloyd_max_table(5));
  EXPECT_THROW(lloyd_max_table(1), Error);
  EXPECT_THROW(lloyd_max_table(9), Error);
  EXPECT_THROW(lloyd_max_compute(0), Error);
}
