// Helpers of the CUDA differential tests: the GPU skip guard, random weights in the checkpoint formats the CPU
// reference reads (owning storage + LinearWeight views), bf16-exact random activations, and the norm-wise
// relative error ‖got − ref‖ / ‖ref‖ (NaN anywhere fails).
#pragma once
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backend/cuda/device_buffer.h"
#include "model/weights.h"

// Skip loudly (stderr and the gtest message) when this machine has no CUDA device, so CI without a GPU stays green.
#define HLWQ_REQUIRE_CUDA()                                                 \
  do {                                                                      \
    if (::hlwq::cuda::cuda_device_count() == 0) {                           \
      std::fprintf(stderr, "SKIPPED LOUDLY: no CUDA device\n");             \
      GTEST_SKIP() << "SKIPPED LOUDLY: no CUDA device";                     \
    }                                                                       \
  } while (0)

// EXPECT_REL(got, ref, budget): rel_err(got, ref) < budget, printing the measured error beside its budget.
#define EXPECT_REL(got, ref, budget)                                                                   \
  do {                                                                                                \
    const double hlwq_e_ = ::hlwq::test::rel_err(got, ref);                                           \
    std::printf("[ err      ] %-24s %.3g (budget %.3g)\n", #budget, hlwq_e_, double(budget));         \
    EXPECT_LT(hlwq_e_, budget);                                                                       \
  } while (0)

namespace hlwq::test {

// A LinearWeight together with the bytes its views point to.
struct OwnedLinear {
  LinearWeight w;
  std::vector<uint32_t> packed;  // INT4
  std::vector<uint16_t> scale;   // INT4, bf16
  std::vector<uint16_t> dense;   // BF16
};

// INT4 u4b8_g128 [out, in] with uniform nibbles and bf16 scales of size ~ scale_mag / 8.
std::unique_ptr<OwnedLinear> random_int4(const std::string& name, int64_t out, int64_t in, float scale_mag,
                                         std::mt19937_64& rng);
// BF16 [out, in], values uniform in ±mag, rounded to bf16.
std::unique_ptr<OwnedLinear> random_bf16(const std::string& name, int64_t out, int64_t in, float mag,
                                         std::mt19937_64& rng);
// n floats uniform in ±mag, rounded to bf16 (so a bf16 kernel sees them exactly).
std::vector<float> random_bf16_exact(size_t n, float mag, std::mt19937_64& rng);
std::vector<float> random_f32(size_t n, float lo, float hi, std::mt19937_64& rng);

double rel_err(const std::vector<float>& got, const std::vector<float>& ref);

template <typename T>
cuda::DeviceBuffer<T> to_device(const std::vector<T>& h, const char* what) {
  return cuda::DeviceBuffer<T>(h, what);
}

}  // namespace hlwq::test
