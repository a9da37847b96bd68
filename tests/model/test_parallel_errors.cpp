// Exceptions inside OpenMP regions reach the caller: GCC makes a parallel region's body must-not-throw, so
// without ParallelErrors an HLWQ_CHECK or a bad_alloc in a worker terminates the process.
#include <gtest/gtest.h>

#include <new>

#include "core/error.h"
#include "model/cpu/matmul.h"
#include "core/parallel_errors.h"

namespace hlwq {
namespace {

// A dense F32 weight [1, in] whose data is never read: its scratch (kPanelRows · in floats) cannot be allocated,
// so the kernels fail in their per-thread setup, before touching weights or inputs.
// 2^44 columns · 16 rows · 4 bytes = 2^50 bytes, past any 48-bit address space (never overcommitted).
constexpr int64_t kUnallocatableIn = int64_t(1) << 44;

LinearWeight unallocatable_linear() {
  return {"test.huge", LinearFormat::dense, 1, kUnallocatableIn, {DType::F32, {1, kUnallocatableIn}, nullptr}, {}, {}};
}

TEST(ParallelErrors, FirstExceptionReachesTheCaller) {
  ParallelErrors errs;
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1)
    for (int i = 0; i < 64; ++i)
      errs.run([&] {
        if (i % 16 == 5) fail("item {} failed", i);
      });
  }
  try {
    errs.rethrow();
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("failed"), std::string::npos) << e.what();
  }
}

TEST(ParallelErrors, NestedRegionRethrowsIntoTheOuterOne) {
  ParallelErrors outer;
#pragma omp parallel
  {
#pragma omp for
    for (int i = 0; i < 8; ++i)
      outer.run([&] {
        ParallelErrors inner;
#pragma omp parallel
        inner.run([&] {
          if (i == 3) throw std::bad_alloc();
        });
        inner.rethrow();
      });
  }
  EXPECT_THROW(outer.rethrow(), std::bad_alloc);
}

TEST(ParallelErrors, NoErrorNoThrow) {
  ParallelErrors errs;
  int sum = 0;
#pragma omp parallel for reduction(+ : sum)
  for (int i = 0; i < 10; ++i) errs.run([&] { sum += i; });
  EXPECT_NO_THROW(errs.rethrow());
  EXPECT_EQ(sum, 45);
}

TEST(ParallelErrors, ScratchAllocationFailureInLinearForwardReachesTheCaller) {
  const CpuKernels& k = cpu_kernels();
  const LinearWeight w = unallocatable_linear();
  float y[16] = {};
  // decode (fused-gemv path) and prefill (panel GEMM path); x is never read
  EXPECT_THROW(linear_forward(k, w, nullptr, 1, y), std::bad_alloc);
  EXPECT_THROW(linear_forward(k, w, nullptr, kGemvTokens + 1, y), std::bad_alloc);
}

}  // namespace
}  // namespace hlwq
