// Fused gemv kernels (CpuKernels::gemv_bf16 / gemv_u4b8, the decode path of linear_forward): the AVX2 set
// equals the scalar reference on random data for every token count, odd row counts and odd widths (bf16 tails
// that are not a multiple of 8), with strided inputs and outputs; the scalar reference equals a double-precision
// y = x Wᵀ with W dequantized per SPEC §3; linear_forward at T = 1 matches it above the parallel threshold; and
// the comparison is seen to fail when the INT4 scales are transposed or the nibble order is reversed.
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

// fp32 sums of ≤ 2051 products of O(1) values in different association orders (8 lanes, per-group partial sums
// for INT4): a few ulps × sqrt(n) of Σ|w·x|, with margin.
constexpr double kGemvRelTol = 1e-5;
// Wrong scales or nibble order change a row's sum by O(Σ|w·x|), four orders above kGemvRelTol.
constexpr double kCorruptMinRelErr = 1e-2;

struct Rng {
  std::mt19937 g{4321};
  float normal() { return std::normal_distribution<float>(0.f, 1.f)(g); }
  int uniform(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(g); }
};

// bf16 weights W [nr, in] with their exact values in double.
struct Bf16Rows {
  std::vector<uint16_t> w;  // [nr, in]
  std::vector<double> deq;  // [nr, in]
};

Bf16Rows make_bf16(Rng& r, int64_t nr, int64_t in) {
  Bf16Rows b;
  b.w.resize(size_t(nr * in));
  b.deq.resize(b.w.size());
  for (size_t i = 0; i < b.w.size(); ++i) {
    b.w[i] = f32_to_bf16(r.normal());
    b.deq[i] = bf16_to_f32(b.w[i]);
  }
  return b;
}

// u4b8_g128 rows: packed [nr, in/8] words, fp32 scales [nr, in/128], values q · scale in double.
struct Int4Rows {
  std::vector<uint32_t> packed;  // [nr, in/8]
  std::vector<float> scale;      // [nr, in/128]
  std::vector<double> deq;       // [nr, in]
};

Int4Rows make_int4(Rng& r, int64_t nr, int64_t in) {
  Int4Rows q;
  q.packed.assign(size_t(nr * in / 8), 0);
  q.scale.resize(size_t(nr * in / 128));
  q.deq.resize(size_t(nr * in));
  // scales differ a lot between groups so that using the wrong one is visible
  for (auto& s : q.scale) s = bf16_to_f32(f32_to_bf16(0.01f + 0.2f * std::fabs(r.normal())));
  for (int64_t n = 0; n < nr; ++n)
    for (int64_t k = 0; k < in; ++k) {
      const int v = r.uniform(-8, 7);
      q.packed[size_t(n * in / 8 + k / 8)] |= uint32_t(v + 8) << (4 * (k % 8));
      q.deq[size_t(n * in + k)] = v * double(q.scale[size_t(n * in / 128 + k / 128)]);
    }
  return q;
}

// Inputs X [nt, in] with row stride ldx = in + 5 (gemv must honour ldx), outputs with row stride nr + 3.
struct Io {
  int64_t nt, in, nr, ldx, ldy;
  std::vector<float> x;  // [nt, ldx]
  Io(Rng& r, int64_t nt_, int64_t in_, int64_t nr_) : nt(nt_), in(in_), nr(nr_), ldx(in_ + 5), ldy(nr_ + 3) {
    x.resize(size_t(nt * ldx));
    for (auto& v : x) v = r.normal();
  }
  std::vector<float> y() const { return std::vector<float>(size_t(nt * ldy), -7.f); }
};

// Max over outputs of |got − want| / Σ_k |w·x| (want from deq in double); padding of y must be untouched.
double max_rel_err(const Io& io, const std::vector<double>& deq, const std::vector<float>& y) {
  double worst = 0;
  for (int64_t t = 0; t < io.nt; ++t)
    for (int64_t n = 0; n < io.ldy; ++n) {
      const float got = y[size_t(t * io.ldy + n)];
      if (n >= io.nr) {
        EXPECT_EQ(got, -7.f) << "gemv wrote past nr at t=" << t << " col=" << n;
        continue;
      }
      double ref = 0, mag = 0;
      for (int64_t k = 0; k < io.in; ++k) {
        const double p = double(io.x[size_t(t * io.ldx + k)]) * deq[size_t(n * io.in + k)];
        ref += p;
        mag += std::fabs(p);
      }
      worst = std::max(worst, std::fabs(double(got) - ref) / (mag + 1e-30));
    }
  return worst;
}

std::vector<const CpuKernels*> kernel_sets() {
  std::vector<const CpuKernels*> sets{&cpu_kernels_scalar()};
  if (cpu_has_avx2_fma()) sets.push_back(&cpu_kernels(CpuIsa::avx2));
  return sets;
}

TEST(Gemv, Bf16MatchesReferenceOddShapes) {
  Rng r;
  for (int64_t in : {1, 7, 8, 9, 200, 2051})
    for (int64_t nr : {1, 3, 4, 5, 16}) {
      const Bf16Rows b = make_bf16(r, nr, in);
      for (int64_t nt = 1; nt <= kGemvTokens; ++nt) {
        const Io io(r, nt, in, nr);
        for (const CpuKernels* k : kernel_sets()) {
          std::vector<float> y = io.y();
          k->gemv_bf16(b.w.data(), io.x.data(), io.ldx, nt, in, y.data(), io.ldy, nr);
          EXPECT_LE(max_rel_err(io, b.deq, y), kGemvRelTol) << k->isa << " in=" << in << " nr=" << nr << " nt=" << nt;
        }
      }
    }
}

TEST(Gemv, Int4MatchesReferenceOddShapes) {
  Rng r;
  for (int64_t in : {128, 384, 2048})
    for (int64_t nr : {1, 2, 3, 5, 16}) {
      const Int4Rows q = make_int4(r, nr, in);
      for (int64_t nt = 1; nt <= kGemvTokens; ++nt) {
        const Io io(r, nt, in, nr);
        for (const CpuKernels* k : kernel_sets()) {
          std::vector<float> y = io.y();
          k->gemv_u4b8(reinterpret_cast<const uint8_t*>(q.packed.data()), q.scale.data(), io.x.data(), io.ldx, nt, in,
                       y.data(), io.ldy, nr);
          EXPECT_LE(max_rel_err(io, q.deq, y), kGemvRelTol) << k->isa << " in=" << in << " nr=" << nr << " nt=" << nt;
        }
      }
    }
}

TEST(Gemv, Avx2EqualsScalar) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2/FMA on this CPU";
  const CpuKernels &s = cpu_kernels_scalar(), &a = cpu_kernels(CpuIsa::avx2);
  Rng r;
  for (int64_t nt = 1; nt <= kGemvTokens; ++nt) {
    const int64_t nr = 13, in_b = 1003, in_q = 1024;
    const Bf16Rows b = make_bf16(r, nr, in_b);
    const Int4Rows q = make_int4(r, nr, in_q);
    const Io ib(r, nt, in_b, nr), iq(r, nt, in_q, nr);
    std::vector<float> ys = ib.y(), ya = ib.y();
    s.gemv_bf16(b.w.data(), ib.x.data(), ib.ldx, nt, in_b, ys.data(), ib.ldy, nr);
    a.gemv_bf16(b.w.data(), ib.x.data(), ib.ldx, nt, in_b, ya.data(), ib.ldy, nr);
    for (size_t i = 0; i < ys.size(); ++i) EXPECT_NEAR(ys[i], ya[i], 1e-3) << "bf16 nt=" << nt << " i=" << i;
    ys = iq.y(), ya = iq.y();
    const auto* p = reinterpret_cast<const uint8_t*>(q.packed.data());
    s.gemv_u4b8(p, q.scale.data(), iq.x.data(), iq.ldx, nt, in_q, ys.data(), iq.ldy, nr);
    a.gemv_u4b8(p, q.scale.data(), iq.x.data(), iq.ldx, nt, in_q, ya.data(), iq.ldy, nr);
    for (size_t i = 0; i < ys.size(); ++i) EXPECT_NEAR(ys[i], ya[i], 1e-3) << "int4 nt=" << nt << " i=" << i;
  }
}

// The comparisons above can fail: scales read as [in/128, nr] (transposed) or nibbles taken highest first
// give errors far above the tolerance.
TEST(Gemv, Int4CorruptScalesOrNibblesDiffer) {
  Rng r;
  const int64_t nr = 4, in = 384, ng = in / 128;
  const Int4Rows q = make_int4(r, nr, in);
  std::vector<float> scale_t(q.scale.size());  // [ng, nr]
  for (int64_t n = 0; n < nr; ++n)
    for (int64_t g = 0; g < ng; ++g) scale_t[size_t(g * nr + n)] = q.scale[size_t(n * ng + g)];
  std::vector<uint32_t> reversed(q.packed.size());
  for (size_t j = 0; j < q.packed.size(); ++j)
    for (int i = 0; i < 8; ++i) reversed[j] |= ((q.packed[j] >> (4 * i)) & 0xFu) << (4 * (7 - i));
  const Io io(r, 1, in, nr);
  for (const CpuKernels* k : kernel_sets()) {
    std::vector<float> y = io.y();
    k->gemv_u4b8(reinterpret_cast<const uint8_t*>(q.packed.data()), scale_t.data(), io.x.data(), io.ldx, 1, in,
                 y.data(), io.ldy, nr);
    EXPECT_GT(max_rel_err(io, q.deq, y), kCorruptMinRelErr) << k->isa << " transposed scales";
    y = io.y();
    k->gemv_u4b8(reinterpret_cast<const uint8_t*>(reversed.data()), q.scale.data(), io.x.data(), io.ldx, 1, in,
                 y.data(), io.ldy, nr);
    EXPECT_GT(max_rel_err(io, q.deq, y), kCorruptMinRelErr) << k->isa << " reversed nibbles";
  }
}

// linear_forward at decode sizes (up to kGemvMaxTokens tokens, kGemvTokens per kernel call) goes through the gemv
// path, in parallel above kParallelMinMacs (1100 · 1024 ≥ 2^20): every row block and token must land in its place.
TEST(Gemv, LinearForwardDecodeParallel) {
  Rng r;
  const int64_t out = 1100, in = 1024;
  const Bf16Rows b = make_bf16(r, out, in);
  const Int4Rows q = make_int4(r, out, in);
  std::vector<uint16_t> scale_bf16(q.scale.size());
  for (size_t i = 0; i < q.scale.size(); ++i) scale_bf16[i] = f32_to_bf16(q.scale[i]);  // exact: made from bf16
  const LinearWeight dense{"test.dense", LinearFormat::dense, out, in, {DType::BF16, {out, in}, b.w.data()}, {}, {}, {}};
  const LinearWeight int4{"test.int4", LinearFormat::u4b8_g128, out, in, {},
                          {DType::I32, {out, in / 8}, q.packed.data()}, {DType::BF16, {out, in / 128}, scale_bf16.data()},
                          {}};
  for (const CpuKernels* k : kernel_sets())
    for (int64_t T : {int64_t(1), int64_t(2), int64_t(3), int64_t(4), int64_t(7), kGemvMaxTokens}) {
      Io io(r, T, in, out);
      io.ldx = in;  // linear_forward takes packed x [T, in] and y [T, out]
      io.ldy = out;
      std::vector<float> y(size_t(T * out));
      test::CpuTestCtx c(*k);
      linear_forward(c.ctx, dense, io.x.data(), T, y.data());
      EXPECT_LE(max_rel_err(io, b.deq, y), kGemvRelTol) << k->isa << " bf16 T=" << T;
      linear_forward(c.ctx, int4, io.x.data(), T, y.data());
      EXPECT_LE(max_rel_err(io, q.deq, y), kGemvRelTol) << k->isa << " int4 T=" << T;
    }
}

}  // namespace
}  // namespace hlwq
