// Fragment-order weight packing (CPU-only checks, run everywhere) and the tensor-core GEMM against the CPU
// linear_forward on Qwen3.6 shapes: INT4 (2048→512 experts, 512→2048 down, 2048→8192, 4096→2048) and bf16
// (router 2048→256 + 1, 2048→4096 and a 1-row matrix padded to 32), at decode batches 1–16 and a prefill tile count;
// the large-tile prefill kernel against both.
#include <gtest/gtest.h>

#include "backend/cuda/gemm.cuh"
#include "backend/cuda/gemm_tiled.cuh"
#include "core/dtype.h"
#include "cuda_test_util.h"
#include "error_budgets.h"
#include "cpu_reference.h"

namespace hlwq {
namespace {

using test::rel_err;

// Inverse of the documented INT4 fragment order: value u at (row, col) of the packed matrix.
uint32_t unpack_u(const cuda::PackedLinearHost& p, int64_t row, int64_t col) {
  const int64_t rt = row / 16, i = row % 16, kt = col / 64, kk = col % 64, j = kk / 16, k16 = kk % 16;
  const int64_t g = i % 8, c = (k16 % 8) / 2, hi = k16 % 2, s = (i / 8) + 2 * (k16 / 8);
  const int64_t lane = g * 4 + c, n = s + 4 * hi;
  const uint32_t w = p.q[size_t(((rt * (p.in_pad / 64) + kt) * 32 + lane) * 4 + j)];
  return (w >> (4 * n)) & 0xF;
}

TEST(CudaPack, Int4FragmentOrderMatchesCheckpoint) {
  std::mt19937_64 rng(1);
  auto w = test::random_int4("w", 40, 256, 1.f, rng);  // 40 rows: padded to 64
  const auto p = cuda::pack_linear(cuda::PackedFormat::int4, w->w);
  ASSERT_EQ(p.out_pad, 64);
  ASSERT_EQ(p.in_pad, 256);
  for (int64_t r = 0; r < p.out_pad; ++r)
    for (int64_t k = 0; k < p.in_pad; ++k) {
      const uint32_t want = r < 40 ? (w->packed[size_t(r * 32 + k / 8)] >> (4 * (k % 8))) & 0xF : 8u;
      ASSERT_EQ(unpack_u(p, r, k), want) << "row " << r << " col " << k;
    }
  // scales: pair {row g, row g + 8} of each 16-row tile and group
  for (int64_t r = 0; r < 40; ++r)
    for (int64_t gr = 0; gr < 2; ++gr)
      ASSERT_EQ(p.scale[size_t((((r / 16) * 2 + gr) * 8 + r % 8) * 2 + (r % 16) / 8)],
                bf16_to_f32(w->scale[size_t(r * 2 + gr)]));
}

TEST(CudaPack, Bf16FragmentOrderMatchesCheckpoint) {
  std::mt19937_64 rng(2);
  auto w = test::random_bf16("w", 17, 200, 1.f, rng);  // padded to 32 x 256
  const auto p = cuda::pack_linear(cuda::PackedFormat::bf16, w->w);
  ASSERT_EQ(p.out_pad, 32);
  ASSERT_EQ(p.in_pad, 256);
  for (int64_t r = 0; r < p.out_pad; ++r)
    for (int64_t k = 0; k < p.in_pad; ++k) {
      const int64_t rt = r / 16, i = r % 16, ks = k / 16, k16 = k % 16;
      const int64_t lane = (i % 8) * 4 + (k16 % 8) / 2, reg = (i / 8) + 2 * (k16 / 8);
      const uint32_t word = p.q[size_t(((rt * (p.in_pad / 16) + ks) * 32 + lane) * 4 + reg)];
      const uint16_t got = uint16_t(k16 % 2 ? word >> 16 : word & 0xFFFF);
      const uint16_t want = (r < 17 && k < 200) ? w->dense[size_t(r * 200 + k)] : 0;
      ASSERT_EQ(got, want) << "row " << r << " col " << k;
    }
}

TEST(CudaPack, RejectsMismatchedSources) {
  std::mt19937_64 rng(3);
  auto a = test::random_int4("a", 16, 256, 1.f, rng);
  auto b = test::random_int4("b", 16, 128, 1.f, rng);
  auto d = test::random_bf16("d", 16, 256, 1.f, rng);
  EXPECT_THROW(cuda::pack_rows(cuda::PackedFormat::int4, {{&a->w, 0, 16}, {&b->w, 0, 16}}, "ab"), Error);
  EXPECT_THROW(cuda::pack_linear(cuda::PackedFormat::int4, d->w), Error);
  EXPECT_THROW(cuda::pack_linear(cuda::PackedFormat::bf16, a->w), Error);
  EXPECT_THROW(cuda::pack_rows(cuda::PackedFormat::int4, {{&a->w, 8, 16}}, "a"), Error);
}

// Slices (used to run a wide shared expert as expert-width parts) keep every value where it was.
TEST(CudaPack, RowAndColumnSlicesKeepValues) {
  std::mt19937_64 rng(4);
  auto q = test::random_int4("q", 32, 512, 1.f, rng);
  std::vector<uint8_t> st;
  const LinearWeight qc = cuda::column_slice(q->w, 256, 256, st);
  ASSERT_EQ(qc.in, 256);
  for (int64_t r = 0; r < 32; ++r) {
    for (int64_t k = 0; k < 256 / 8; ++k)
      ASSERT_EQ(qc.packed.as<uint32_t>()[r * 32 + k], q->packed[size_t(r * 64 + 32 + k)]) << r << "," << k;
    for (int64_t g = 0; g < 2; ++g)
      ASSERT_EQ(qc.scale.as<uint16_t>()[r * 2 + g], q->scale[size_t(r * 4 + 2 + g)]) << r << "," << g;
  }
  EXPECT_THROW(cuda::column_slice(q->w, 64, 128, st), Error);  // not on a 128-column group
  const LinearWeight qr = cuda::row_slice(q->w, 16, 8);
  ASSERT_EQ(qr.out, 8);
  EXPECT_EQ(qr.packed.as<uint32_t>()[0], q->packed[size_t(16 * 64)]);
  EXPECT_EQ(qr.scale.as<uint16_t>()[7 * 4 + 3], q->scale[size_t(23 * 4 + 3)]);
  EXPECT_THROW(cuda::row_slice(q->w, 30, 8), Error);

  auto d = test::random_bf16("d", 5, 100, 1.f, rng);
  const LinearWeight dc = cuda::column_slice(d->w, 30, 40, st);
  for (int64_t r = 0; r < 5; ++r)
    for (int64_t k = 0; k < 40; ++k) ASSERT_EQ(dc.weight.as<uint16_t>()[r * 40 + k], d->dense[size_t(r * 100 + 30 + k)]);
  const LinearWeight dr = cuda::row_slice(d->w, 2, 3);
  EXPECT_EQ(dr.weight.as<uint16_t>()[0], d->dense[200]);
}

// GPU y [T, out] for a packed matrix and fp32 x [T, in].
std::vector<float> gpu_linear(const cuda::PackedLinear& w, const std::vector<float>& x, int64_t T) {
  cuda::DeviceBuffer<float> dx(x, "x");
  cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(T, w.in_pad)), "xfrag");
  cuda::DeviceBuffer<float> y(size_t(T * w.out), "y");
  cuda::pack_activations(dx.get(), w.in, T, w.in, nullptr, T, w.in_pad, xf.get(), nullptr);
  cuda::gemm(w, xf.get(), T, y.get(), w.out, nullptr);
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "gemm test");
  return y.download();
}

struct Shape {
  int64_t out, in;
};

TEST(CudaGemm, Int4MatchesCpuOnQwenShapes) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(10);
  for (Shape s : {Shape{512, 2048}, Shape{2048, 512}, Shape{8192, 2048}, Shape{2048, 4096}}) {
    auto w = test::random_int4("w", s.out, s.in, 0.05f, rng);
    const auto dw = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::int4, w->w), "w");
    for (int64_t T : {1, 2, 3, 8, 9, 16, 77}) {
      SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " T=" << T);
      // bf16-exact input: only summation order differs
      const auto xe = test::random_bf16_exact(size_t(T * s.in), 1.f, rng);
      std::vector<float> ref(size_t(T * s.out));
      test::ref_linear(w->w, xe.data(), T, ref.data());
      EXPECT_REL(gpu_linear(dw, xe, T), ref, test::kExactInputGemmRel);
      // arbitrary fp32 input: bf16 rounding of the activations
      const auto xf = test::random_f32(size_t(T * s.in), -1.f, 1.f, rng);
      test::ref_linear(w->w, xf.data(), T, ref.data());
      EXPECT_REL(gpu_linear(dw, xf, T), ref, test::kBf16ActivationRel);
    }
  }
}

TEST(CudaGemm, Bf16MatchesCpu) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(11);
  for (Shape s : {Shape{257, 2048}, Shape{4096, 2048}, Shape{1, 2048}, Shape{2048, 4096}}) {
    auto w = test::random_bf16("w", s.out, s.in, 0.05f, rng);
    const auto dw = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::bf16, w->w), "w");
    for (int64_t T : {1, 5, 16, 40}) {
      SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " T=" << T);
      const auto xe = test::random_bf16_exact(size_t(T * s.in), 1.f, rng);
      std::vector<float> ref(size_t(T * s.out));
      test::ref_linear(w->w, xe.data(), T, ref.data());
      EXPECT_REL(gpu_linear(dw, xe, T), ref, test::kExactInputGemmRel);
    }
  }
}

// The large-tile prefill kernel (gemm_tiled.cuh) that gemm() runs for INT4 prefill batches where it pays, called
// directly: against the CPU, and against the fragment kernel, which sums in another order only. Shapes with partial
// row blocks (300 rows: 20 row tiles, 8 a block), fewer k-units than pipeline stages (128 columns), a long k loop
// (4096), token counts around the 64- and 128-token tiles, and a grid large enough for 128-token blocks on an H200.
TEST(CudaGemm, TiledInt4MatchesCpuAndTheFragmentKernel) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(13);
  struct Case {
    Shape s;
    std::vector<int64_t> Ts;
  };
  for (const Case& cs : {Case{{300, 2048}, {63, 64, 65, 128, 200}}, Case{{64, 128}, {64, 77}},
                         Case{{2048, 4096}, {130}}, Case{{2048, 512}, {1100}}}) {
    const Shape s = cs.s;
    auto w = test::random_int4("w", s.out, s.in, 0.05f, rng);
    const auto dw = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::int4, w->w), "w");
    for (int64_t T : cs.Ts) {
      SCOPED_TRACE(testing::Message() << s.out << "x" << s.in << " T=" << T);
      const auto xe = test::random_bf16_exact(size_t(T * s.in), 1.f, rng);
      std::vector<float> ref(size_t(T * s.out));
      test::ref_linear(w->w, xe.data(), T, ref.data());
      cuda::DeviceBuffer<float> dx(xe, "x");
      cuda::DeviceBuffer<uint32_t> xf(size_t(cuda::xfrag_words(T, dw.in_pad)), "xfrag");
      cuda::DeviceBuffer<float> y(size_t(T * s.out), "y");
      cuda::pack_activations(dx.get(), s.in, T, s.in, nullptr, T, dw.in_pad, xf.get(), nullptr);
      cuda::gemm_tiled_int4(dw, xf.get(), T, y.get(), s.out, nullptr);
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "tiled gemm");
      const auto got = y.download();
      EXPECT_REL(got, ref, test::kExactInputGemmRel);
      cuda::gemm_fragment(dw, xf.get(), T, y.get(), s.out, nullptr);
      HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "fragment gemm");
      EXPECT_REL(got, y.download(), test::kExactInputGemmRel);
    }
  }
}

// A wrong answer must fail: a GEMM of a different matrix is far outside the budget.
TEST(CudaGemm, DetectsWrongWeights) {
  HLWQ_REQUIRE_CUDA();
  std::mt19937_64 rng(12);
  auto w = test::random_int4("w", 512, 2048, 0.05f, rng);
  auto w2 = test::random_int4("w2", 512, 2048, 0.05f, rng);
  const auto dw2 = cuda::upload_packed(cuda::pack_linear(cuda::PackedFormat::int4, w2->w), "w2");
  const auto x = test::random_bf16_exact(2048, 1.f, rng);
  std::vector<float> ref(512);
  test::ref_linear(w->w, x.data(), 1, ref.data());
  EXPECT_GT(rel_err(gpu_linear(dw2, x, 1), ref), 0.5);
}

}  // namespace
}  // namespace hlwq
