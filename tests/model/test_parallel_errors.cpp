// Exceptions inside OpenMP regions reach the caller: GCC makes a parallel region's body must-not-throw, so
// without ParallelErrors an HLWQ_CHECK or a bad_alloc in a worker terminates the process.
#include <gtest/gtest.h>

#include <new>

#include "core/error.h"
#include "backend/cpu/matmul.h"
#include "model_test_util.h"
#include "core/parallel_errors.h"

namespace hlwq {
namespace {

// A dense F32 weight [1, in] whose data is never read: its scratch (kPanelRows · in floats) fits no arena, so
// the kernels fail when they take it, before touching weights or inputs.
constexpr int64_t kUnallocatableIn = int64_t(1) << 44;

LinearWeight unallocatable_linear() {
  return {"test.huge", LinearFormat::dense, 1, kUnallocatableIn, {DType::F32, {1, kUnallocatableIn}, nullptr}, {}, {},
          {}};
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

TEST(ParallelErrors, ScratchExhaustionInLinearForwardReachesTheCaller) {
  // Scratch is preallocated: a linear wider than the arenas were sized for fails with a clear error (from inside
  // the parallel region) instead of allocating.
  test::CpuTestCtx c(cpu_kernels(), 1024);
  const LinearWeight w = unallocatable_linear();
  float y[16] = {};
  // decode (fused-gemv path) and prefill (panel GEMM path); x is never read
  EXPECT_THROW(linear_forward(c.ctx, w, nullptr, 1, y), Error);
  EXPECT_THROW(linear_forward(c.ctx, w, nullptr, kGemvMaxTokens + 1, y), Error);
}

}  // namespace
}  // namespace hlwq
