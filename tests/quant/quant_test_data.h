// Deterministic random weights for the quant tests (fixed-seed mt19937; libstdc++'s distributions are stable).
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

namespace hlwq::test {

// [n] iid N(0, sigma²).
inline std::vector<float> gaussian_values(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// [n] Student-t with 3 degrees of freedom (heavy tails, like trained LLM weights with outliers).
inline std::vector<float> heavy_tailed_values(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::student_t_distribution<float> d(3.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

}  // namespace hlwq::test
