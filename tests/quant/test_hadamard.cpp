// FWHT vs the explicit Sylvester matrix (natural order), orthonormality and self-inverse property.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "quant/hadamard.h"
#include "quant_test_data.h"

using namespace hlwq;

namespace {

constexpr int kN = 128;

// Sylvester H_128 / √128 in double: H₁ = [1], H₂ₙ = [[Hₙ, Hₙ], [Hₙ, −Hₙ]]. Entry (i, j) = (−1)^popcount(i & j).
std::vector<double> sylvester_matrix() {
  std::vector<double> h(kN * kN);
  for (int i = 0; i < kN; ++i)
    for (int j = 0; j < kN; ++j) h[i * kN + j] = (__builtin_popcount(i & j) & 1 ? -1.0 : 1.0) / std::sqrt(double(kN));
  return h;
}

std::vector<double> matvec(const std::vector<double>& h, const float* x) {
  std::vector<double> y(kN, 0.0);
  for (int i = 0; i < kN; ++i)
    for (int j = 0; j < kN; ++j) y[i] += h[i * kN + j] * x[j];
  return y;
}

}  // namespace

TEST(Hadamard, SylvesterRecursionMatchesPopcountForm) {
  // Build H_128 by the recursion literally and compare with the closed form used above.
  std::vector<double> h = {1.0};
  for (int n = 1; n < kN; n *= 2) {
    std::vector<double> h2(4 * n * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const double v = h[i * n + j];
        h2[i * 2 * n + j] = v, h2[i * 2 * n + j + n] = v, h2[(i + n) * 2 * n + j] = v, h2[(i + n) * 2 * n + j + n] = -v;
      }
    h.swap(h2);
  }
  const auto ref = sylvester_matrix();
  for (int k = 0; k < kN * kN; ++k) ASSERT_EQ(h[k] / std::sqrt(double(kN)), ref[k]) << k;
}

TEST(Hadamard, EqualsExplicitMatrixProduct) {
  const auto h = sylvester_matrix();
  for (uint32_t seed = 1; seed <= 4; ++seed) {
    auto x = test::gaussian_values(kN, seed);
    const auto ref = matvec(h, x.data());
    fwht128(x.data());
    for (int i = 0; i < kN; ++i) ASSERT_NEAR(x[i], ref[i], 1e-6) << "seed " << seed << " i " << i;
  }
}

TEST(Hadamard, BitReversedOrderWouldDiffer) {
  // Negative control: a sequency/bit-reversed ordering is a different matrix; the test above must notice it.
  const auto h = sylvester_matrix();
  auto x = test::gaussian_values(kN, 7);
  const auto ref = matvec(h, x.data());
  fwht128(x.data());
  double diff = 0;
  for (int i = 0; i < kN; ++i) {
    int r = 0;
    for (int b = 0; b < 7; ++b) r |= ((i >> b) & 1) << (6 - b);
    diff = std::max(diff, std::fabs(x[r] - ref[i]));
  }
  EXPECT_GT(diff, 1e-2);
}

TEST(Hadamard, SelfInverseOnBasisVectors) {  // H·H = I, column by column
  for (int i = 0; i < kN; ++i) {
    std::vector<float> e(kN, 0.0f);
    e[i] = 1.0f;
    fwht128(e.data());
    fwht128(e.data());
    for (int j = 0; j < kN; ++j) ASSERT_NEAR(e[j], i == j ? 1.0f : 0.0f, 1e-6) << i << "," << j;
  }
}

TEST(Hadamard, PreservesNorm) {
  auto x = test::heavy_tailed_values(kN, 3);
  double n0 = 0, n1 = 0;
  for (float v : x) n0 += double(v) * v;
  fwht128(x.data());
  for (float v : x) n1 += double(v) * v;
  EXPECT_NEAR(n1, n0, 1e-5 * n0);
}

TEST(Hadamard, UnscaledIsSqrt128TimesOrthonormal) {
  auto a = test::gaussian_values(kN, 11);
  auto b = a;
  fwht128(a.data());
  fwht128_unscaled(b.data());
  for (int i = 0; i < kN; ++i) ASSERT_NEAR(b[i], a[i] * std::sqrt(128.0f), 1e-5) << i;
}

TEST(Hadamard, BatchEqualsPerBlock) {
  const int n_blocks = 5;
  auto x = test::gaussian_values(n_blocks * kN, 5);
  auto y = x;
  fwht128_batch(x.data(), n_blocks);
  for (int b = 0; b < n_blocks; ++b) fwht128(y.data() + b * kN);
  EXPECT_EQ(x, y);
}
