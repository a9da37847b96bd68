// CPU kernels: the AVX2/FMA set equals the scalar set, and linear_forward (dense bf16 and INT4) equals a
// double-precision reference of y = x Wᵀ with W dequantized per SPEC §3.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/matmul.h"
#include "model_test_util.h"

namespace hlwq {
namespace {

// fp32 sums of ≤ 1024 products of O(1) values, in different association orders: a few ulps × sqrt(n).
constexpr double kKernelRelTol = 1e-5;

struct Rng {
  std::mt19937 g{1234};
  float normal() { return std::normal_distribution<float>(0.f, 1.f)(g); }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
};

// Owned storage for a LinearWeight in either format.
struct OwnedLinear {
  std::vector<uint16_t> w_bf16;  // [out, in]
  std::vector<int32_t> packed;   // [out, in/8]
  std::vector<uint16_t> scale;   // [out, in/128] bf16
  LinearWeight lw;
  std::vector<double> deq;  // [out, in] the reference values
};

OwnedLinear make_dense(Rng& r, int64_t out, int64_t in) {
  OwnedLinear o;
  o.w_bf16.resize(size_t(out * in));
  o.deq.resize(o.w_bf16.size());
  for (size_t i = 0; i < o.w_bf16.size(); ++i) {
    o.w_bf16[i] = f32_to_bf16(r.normal());
    o.deq[i] = bf16_to_f32(o.w_bf16[i]);
  }
  o.lw = {"test.dense", LinearFormat::dense, out, in, {DType::BF16, {out, in}, o.w_bf16.data()}, {}, {}, {}};
  return o;
}

OwnedLinear make_int4(Rng& r, int64_t out, int64_t in) {
  OwnedLinear o;
  o.packed.assign(size_t(out * in / 8), 0);
  o.scale.resize(size_t(out * in / 128));
  o.deq.resize(size_t(out * in));
  for (auto& s : o.scale) s = f32_to_bf16(0.01f + 0.1f * std::fabs(r.normal()));
  for (int64_t n = 0; n < out; ++n)
    for (int64_t k = 0; k < in; ++k) {
      const int q = r.uniform(-8, 7);
      uint32_t& word = reinterpret_cast<uint32_t&>(o.packed[size_t(n * in / 8 + k / 8)]);
      word |= uint32_t(q + 8) << (4 * (k % 8));
      o.deq[size_t(n * in + k)] = q * double(bf16_to_f32(o.scale[size_t(n * in / 128 + k / 128)]));
    }
  o.lw = {"test.int4", LinearFormat::u4b8_g128, out, in, {}, {DType::I32, {out, in / 8}, o.packed.data()},
          {DType::BF16, {out, in / 128}, o.scale.data()}, {}};
  return o;
}

void expect_linear_matches_reference(const CpuKernels& k, const OwnedLinear& o, int64_t T, Rng& r) {
  const int64_t out = o.lw.out, in = o.lw.in;
  std::vector<float> x(size_t(T * in)), y(size_t(T * out));
  for (auto& v : x) v = r.normal();
  test::CpuTestCtx c(k);
  linear_forward(c.ctx, o.lw, x.data(), T, y.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < out; ++n) {
      double ref = 0, mag = 0;
      for (int64_t c = 0; c < in; ++c) {
        ref += double(x[size_t(t * in + c)]) * o.deq[size_t(n * in + c)];
        mag += std::fabs(double(x[size_t(t * in + c)]) * o.deq[size_t(n * in + c)]);
      }
      ASSERT_NEAR(y[size_t(t * out + n)], ref, kKernelRelTol * mag + 1e-30)
          << k.isa << " " << o.lw.name << " T=" << T << " t=" << t << " row=" << n;
    }
}

bool have_avx2() { return cpu_has_avx2_fma(); }

TEST(Kernels, U4b8DecodesTheSpecExample) {
  // SPEC §3: q = [-8,-1,0,1,7,3,-2,5] packs to the word 0xD6BF9870 (file bytes 70 98 BF D6).
  std::vector<uint8_t> packed(64, 0x88);  // 128 inputs; the rest are q = 0
  const uint8_t bytes[4] = {0x70, 0x98, 0xBF, 0xD6};
  std::memcpy(packed.data(), bytes, 4);
  const float scale = 0.5f;
  const float want[8] = {-8, -1, 0, 1, 7, 3, -2, 5};
  for (const CpuKernels* k : {&cpu_kernels_scalar(), &cpu_kernels(CpuIsa::auto_detect)}) {
    std::vector<float> row(128);
    k->u4b8_row_to_f32(packed.data(), &scale, row.data(), 128);
    for (int i = 0; i < 8; ++i) EXPECT_EQ(row[size_t(i)], want[i] * scale) << k->isa << " element " << i;
    for (int i = 8; i < 128; ++i) EXPECT_EQ(row[size_t(i)], 0.f) << k->isa << " element " << i;
  }
}

TEST(Kernels, Avx2EqualsScalarElementwise) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const CpuKernels &s = cpu_kernels_scalar(), &a = cpu_kernels(CpuIsa::avx2);
  Rng r;
  for (int64_t n : {1, 7, 8, 15, 16, 33, 256, 1000}) {
    std::vector<uint16_t> h(static_cast<size_t>(n));
    std::vector<float> x(static_cast<size_t>(n)), y(static_cast<size_t>(n)), f1(static_cast<size_t>(n)), f2(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h[size_t(i)] = f32_to_bf16(r.normal()), x[size_t(i)] = r.normal(), y[size_t(i)] = r.normal();
    s.bf16_to_f32(h.data(), f1.data(), n);
    a.bf16_to_f32(h.data(), f2.data(), n);
    EXPECT_EQ(f1, f2) << "bf16_to_f32 n=" << n;
    double mag = 0;
    for (int64_t i = 0; i < n; ++i) mag += std::fabs(x[size_t(i)] * y[size_t(i)]);
    EXPECT_NEAR(s.dot(x.data(), y.data(), n), a.dot(x.data(), y.data(), n), kKernelRelTol * mag) << "dot n=" << n;
    f1 = y, f2 = y;
    s.axpy(0.37f, x.data(), f1.data(), n);
    a.axpy(0.37f, x.data(), f2.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(f1[size_t(i)], f2[size_t(i)], 1e-6 * (1 + std::fabs(f1[size_t(i)])));
  }
  // INT4 rows: exact (one product per element, same operands)
  OwnedLinear q = make_int4(r, 3, 384);
  std::vector<float> scale(3), r1(384), r2(384);
  for (int g = 0; g < 3; ++g) scale[size_t(g)] = bf16_to_f32(q.scale[size_t(g)]);
  s.u4b8_row_to_f32(reinterpret_cast<const uint8_t*>(q.packed.data()), scale.data(), r1.data(), 384);
  a.u4b8_row_to_f32(reinterpret_cast<const uint8_t*>(q.packed.data()), scale.data(), r2.data(), 384);
  EXPECT_EQ(r1, r2);
}

TEST(Kernels, Avx2EqualsScalarGemmPanel) {
  if (!have_avx2()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const CpuKernels &s = cpu_kernels_scalar(), &a = cpu_kernels(CpuIsa::avx2);
  Rng r;
  const int64_t in = 200;
  std::vector<float> P(size_t(in * kPanelRows)), X(size_t(kPanelTokens * (in + 3)));
  for (auto& v : P) v = r.normal();
  for (auto& v : X) v = r.normal();
  for (int64_t nt = 1; nt <= kPanelTokens; ++nt)
    for (int64_t nr : {int64_t(1), int64_t(5), kPanelRows}) {
      std::vector<float> y1(size_t(nt * 20), -7.f), y2(size_t(nt * 20), -7.f);
      s.gemm_panel(P.data(), X.data(), in + 3, nt, in, y1.data(), 20, nr);
      a.gemm_panel(P.data(), X.data(), in + 3, nt, in, y2.data(), 20, nr);
      for (size_t i = 0; i < y1.size(); ++i) EXPECT_NEAR(y1[i], y2[i], 1e-4) << "nt=" << nt << " nr=" << nr << " i=" << i;
    }
}

TEST(Kernels, LinearForwardMatchesReferenceBothIsas) {
  Rng r;
  std::vector<const CpuKernels*> sets{&cpu_kernels_scalar()};
  if (have_avx2()) sets.push_back(&cpu_kernels(CpuIsa::avx2));
  const OwnedLinear dense = make_dense(r, 37, 200), int4 = make_int4(r, 37, 256);
  for (const CpuKernels* k : sets)
    for (int64_t T : {1, 3, 4, 7, 50}) {
      expect_linear_matches_reference(*k, dense, T, r);
      expect_linear_matches_reference(*k, int4, T, r);
    }
}

}  // namespace
}  // namespace hlwq
