// The calibration statistics kernel (backend/cuda/input_stats.cuh) against Σ x xᵀ in double on the host, for each
// way it reads its rows: fp32 rows, rows gathered through a list (two jobs at once, a repeated row among them), bf16
// elements of an xfrag buffer written by pack_activations, and the shared expert's row assembled from its slices'
// slots. Widths that are not multiples of the 64-wide tile check the edges. Only entries on or above the diagonal
// are compared: the kernel writes the upper tiles, InputStatsDev::take mirrors them.
// Negative control: the same sums with one row list shifted by one row miss their budget by orders of magnitude.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/input_stats.cuh"
#include "cuda_test_util.h"

namespace hlwq {
namespace {

using cuda::DeviceBuffer;
using cuda::GramJob;
using cuda::GramSource;

// Σ_r x_r x_rᵀ [n, n] in double; x(r, c) gives element c of row r.
template <typename F>
std::vector<double> gram_ref(int64_t rows, int64_t n, F x) {
  std::vector<double> H(size_t(n * n), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) H[size_t(i * n + j)] += double(x(r, i)) * double(x(r, j));
  return H;
}

// Largest |got − ref| on or above the diagonal, relative to the largest |ref| there.
double upper_err(const std::vector<double>& got, const std::vector<double>& ref, int64_t n) {
  double err = 0, mag = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = i; j < n; ++j) {
      err = std::max(err, std::fabs(got[size_t(i * n + j)] - ref[size_t(i * n + j)]));
      mag = std::max(mag, std::fabs(ref[size_t(i * n + j)]));
    }
  return err / mag;
}

// fp32 products summed in fp32 over at most a few dozen rows, against double
constexpr double kGramTol = 1e-6;

struct Jobs {
  std::vector<DeviceBuffer<double>> H;
  DeviceBuffer<GramJob> dev;
  Jobs(int64_t n, const std::vector<std::pair<int, int>>& ranges) {  // (r0, n_rows) per job; n_rows −1: dense
    std::vector<GramJob> j;
    for (const auto& [r0, nr] : ranges) {
      H.emplace_back(size_t(n * n), "H");
      EXPECT_EQ(cudaMemset(H.back().get(), 0, H.back().bytes()), cudaSuccess);
      j.push_back(GramJob{H.back().get(), r0, nr});
    }
    dev = DeviceBuffer<GramJob>(j, "jobs");
  }
  std::vector<double> get(size_t i) const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    return H[i].download();
  }
};

TEST(CudaInputStats, DenseRowsAndTwoLaunchesAdd) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(1);
  const int64_t T = 37, n = 200, ld = 210;
  const std::vector<float> x = test::random_f32(size_t(T * ld), -2.f, 2.f, rng);
  const auto d_x = test::to_device(x, "x");
  Jobs jobs(n, {{0, -1}});
  GramSource src;
  src.base = d_x.get();
  src.ld = ld;
  cuda::gram_accumulate(jobs.dev.get(), 1, n, src, T, nullptr);
  cuda::gram_accumulate(jobs.dev.get(), 1, n, src, T, nullptr);  // a second window adds onto the first
  std::vector<double> ref = gram_ref(T, n, [&](int64_t r, int64_t c) { return x[size_t(r * ld + c)]; });
  for (double& v : ref) v *= 2;
  const double e = upper_err(jobs.get(0), ref, n);
  std::printf("[ err      ] dense rows %.3g (budget %.3g)\n", e, kGramTol);
  EXPECT_LT(e, kGramTol);
}

TEST(CudaInputStats, GatheredRowsPerJob) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(2);
  const int64_t T = 24, n = 130;
  const std::vector<float> x = test::random_f32(size_t(T * n), -1.f, 1.f, rng);
  const std::vector<int> rows = {5, 3, 3, 20, 0, 23, 7, 1, 9};  // job 0: the first 4 (row 3 twice), job 1: the rest
  const auto d_x = test::to_device(x, "x");
  const auto d_rows = test::to_device(rows, "rows");
  Jobs jobs(n, {{0, 4}, {4, 5}});
  GramSource src;
  src.base = d_x.get();
  src.ld = n;
  src.rows = d_rows.get();
  cuda::gram_accumulate(jobs.dev.get(), 2, n, src, 0, nullptr);
  for (int k = 0; k < 2; ++k) {
    const int r0 = k == 0 ? 0 : 4, nr = k == 0 ? 4 : 5;
    const auto ref = gram_ref(nr, n, [&](int64_t r, int64_t c) { return x[size_t(rows[size_t(r0 + r)] * n + c)]; });
    const std::vector<double> got = jobs.get(size_t(k));
    EXPECT_LT(upper_err(got, ref, n), kGramTol) << "job " << k;
    // negative control: the job's rows shifted by one are a different sum
    const auto shifted =
        gram_ref(nr, n, [&](int64_t r, int64_t c) { return x[size_t(((rows[size_t(r0 + r)] + 1) % T) * n + c)]; });
    EXPECT_GT(upper_err(got, shifted, n), 1000 * kGramTol) << "job " << k;
  }
}

TEST(CudaInputStats, XfragRowsAndSharedSlices) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(3);
  const int64_t slots = 40, I = 96, in_pad = 128;
  const std::vector<float> h = test::random_bf16_exact(size_t(slots * I), 1.5f, rng);  // exact in bf16
  const auto d_h = test::to_device(h, "h");
  DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(slots, in_pad)), "h xfrag");
  cuda::pack_activations(d_h.get(), I, slots, I, nullptr, slots, in_pad, xf.get(), nullptr);
  // slot rows through a list, as a routed expert's down input reads them
  const std::vector<int> rows = {39, 0, 17, 8};
  const auto d_rows = test::to_device(rows, "rows");
  {
    Jobs jobs(I, {{0, 4}});
    GramSource src;
    src.base = xf.get();
    src.ld = in_pad;
    src.xfrag = true;
    src.rows = d_rows.get();
    cuda::gram_accumulate(jobs.dev.get(), 1, I, src, 0, nullptr);
    const auto ref = gram_ref(4, I, [&](int64_t r, int64_t c) { return h[size_t(rows[size_t(r)] * I + c)]; });
    EXPECT_LT(upper_err(jobs.get(0), ref, I), kGramTol);
  }
  // the shared expert's down input: token t's row is its S = 2 slices side by side, from slots tok_slot[t, k + s]
  const int64_t T = 6, k = 3, S = 2, A = k + S;
  std::vector<int> tok_slot(size_t(T * A), -7);  // routed entries are never read
  for (int64_t t = 0; t < T; ++t)
    for (int64_t s = 0; s < S; ++s) tok_slot[size_t(t * A + k + s)] = int((t * 7 + s * 13) % slots);
  const auto d_tok_slot = test::to_device(tok_slot, "tok_slot");
  Jobs jobs(S * I, {{0, -1}});
  GramSource src;
  src.base = xf.get();
  src.ld = in_pad;
  src.xfrag = true;
  src.part_slot = d_tok_slot.get();
  src.part_stride = A;
  src.part_off = k;
  src.part_width = I;
  cuda::gram_accumulate(jobs.dev.get(), 1, S * I, src, T, nullptr);
  const auto ref = gram_ref(T, S * I, [&](int64_t t, int64_t c) {
    return h[size_t(tok_slot[size_t(t * A + k + c / I)] * I + c % I)];
  });
  const double e = upper_err(jobs.get(0), ref, S * I);
  std::printf("[ err      ] shared slices %.3g (budget %.3g)\n", e, kGramTol);
  EXPECT_LT(e, kGramTol);
}

}  // namespace
}  // namespace hlwq
