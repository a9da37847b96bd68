// GPTQ: the factor of the damped inverse Hessian, the blocked column loop with lazy updates, its INT4 and HLWQ
// grids, and the re-fit of group scales to the chosen codes (see gptq.h). Eigen does the dense algebra; its own threading is off (EIGEN_DONT_PARALLELIZE): the
// rows run in fixed chunks on OpenMP threads, so every row's arithmetic is the same for any thread count.
#define EIGEN_DONT_PARALLELIZE
#include "quant/gptq.h"

#include <Eigen/Cholesky>
#include <Eigen/Core>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel_errors.h"
#include "quant/hadamard.h"
#include "quant/hlwq_pack.h"
#include "quant/int4_pack.h"

namespace hlwq {
namespace {

using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

constexpr int64_t kG = 128;          // INT4 group = HLWQ block = GPTQ's lazy-update block
constexpr int64_t kRowChunk = 32;    // rows one thread carries through the whole column loop
constexpr int kDampRetries = 3;      // λ, 10λ, 100λ, 1000λ
constexpr float kSqrtG = 11.313708498984761f;  // √128
constexpr float kHlwqMinNorm = 1e-10f;          // the codec's floor on a block's l2 norm

bool all_finite(const float* w, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(w[i]);
  return ok;
}

// Orthonormal Walsh–Hadamard transform of x[128] in double (the same matrix as fwht128).
void fwht128_double(double* x) {
  for (int64_t h = 1; h < kG; h *= 2)
    for (int64_t i = 0; i < kG; i += 2 * h)
      for (int64_t j = i; j < i + h; ++j) {
        const double a = x[j], b = x[j + h];
        x[j] = a + b;
        x[j + h] = a - b;
      }
  for (int64_t j = 0; j < kG; ++j) x[j] *= 1.0 / std::sqrt(double(kG));
}

// A grid whose group scales can be read, re-fit and then held fixed (for the scale re-fit rounds).
class ScaledGrid : public GptqGrid {
 public:
  bool fixed = false;  // choose_scales leaves the current scales (set by set_scale) in place
  // The chosen code's value at unit scale (what the group scale multiplies).
  virtual float unit(int64_t row, int64_t col) const = 0;
  virtual float scale(int64_t row, int64_t g) const = 0;  // as stored (decoded)
  virtual float stored(float s) const = 0;                 // s rounded as it would be stored
  virtual void set_scale(int64_t row, int64_t g, float s) = 0;
};

// INT4 (compressed-tensors u4b8, group 128): the group scale is int4_mse_group's (bf16, MSE-optimal on a grid),
// an element rounds like every INT4 method here: q = clamp(round_half_even(v / s), −8, 7).
class Int4Grid final : public ScaledGrid {
 public:
  Int4Grid(int64_t out, int64_t in) : in_(in), ng_(in / kG), scale_(size_t(out * ng_)), sf_(scale_.size()), q_(size_t(out * in)) {}

  void choose_scales(int64_t r0, int64_t nr, int64_t g, const float* wg, int64_t ld, const float* imp) override {
    if (fixed) return;
    alignas(64) int8_t tmp[kG];
    for (int64_t r = 0; r < nr; ++r) {
      const size_t i = size_t((r0 + r) * ng_ + g);
      scale_[i] = int4_mse_group_weighted(wg + r * ld, imp, tmp);
      sf_[i] = bf16_to_f32(scale_[i]);
    }
  }
  float quantize(int64_t row, int64_t col, float v) override {
    const float s = sf_[size_t(row * ng_ + col / kG)];
    const float x = std::clamp(std::nearbyint(std::clamp(v / s, -9.0f, 9.0f)), -8.0f, 7.0f);
    q_[size_t(row * in_ + col)] = int8_t(x);
    return x * s;
  }
  float unit(int64_t row, int64_t col) const override { return float(q_[size_t(row * in_ + col)]); }
  float scale(int64_t row, int64_t g) const override { return sf_[size_t(row * ng_ + g)]; }
  float stored(float s) const override { return bf16_to_f32(f32_to_bf16(s)); }
  void set_scale(int64_t row, int64_t g, float s) override {
    const size_t i = size_t(row * ng_ + g);
    scale_[i] = f32_to_bf16(s);
    sf_[i] = bf16_to_f32(scale_[i]);
  }
  const std::vector<uint16_t>& scales() const { return scale_; }
  const int8_t* q() const { return q_.data(); }

 private:
  int64_t in_, ng_;
  std::vector<uint16_t> scale_;  // [out, ng] bf16 bits
  std::vector<float> sf_;        // the same in fp32
  std::vector<int8_t> q_;        // [out, in]
};

// HLWQ in the rotated domain: a block's rotated values u[128] decode as r·c[code]/√128 (hlwq_codec.h, since
// H(c/√128) rotated back is c/√128). The block scale is the codec's rule on the block when it is fixed: the l2
// norm, or the least-squares scale of the codes nearest at that norm; elements then round to the nearest grid
// point at the scale fixed (for l2, codes are chosen at the unrounded norm, as the codec does).
class HlwqGrid final : public ScaledGrid {
 public:
  HlwqGrid(int64_t out, int64_t np, const HlwqCodebook& cb, HlwqScale mode)
      : nb_(np / kG), cb_(cb), mode_(mode), r16_(size_t(out * nb_)), rsel_(r16_.size()), rval_(r16_.size()),
        codes_(size_t(out * np)) {}

  void choose_scales(int64_t r0, int64_t nr, int64_t g, const float* wg, int64_t ld, const float* imp) override {
    if (fixed) return;
    const float* c = cb_.centroids().data();
    alignas(64) float z[kG];
    uint8_t codes[kG];
    for (int64_t r = 0; r < nr; ++r) {
      const float* u = wg + r * ld;
      double ss = 0;
      for (int64_t j = 0; j < kG; ++j) ss += double(u[j]) * double(u[j]);
      const float rl2 = std::max(float(std::sqrt(ss)), kHlwqMinNorm);
      const size_t i = size_t((r0 + r) * nb_ + g);
      if (mode_ == HlwqScale::l2_norm) {
        r16_[i] = f32_to_f16(rl2);
        rsel_[i] = rl2;
      } else {
        for (int64_t j = 0; j < kG; ++j) z[j] = u[j] * kSqrtG / rl2;
        cb_.nearest_block(z, codes);
        double uv = 0, vv = 0;  // least squares, weighted by importance when given
        for (int64_t j = 0; j < kG; ++j) {
          const double v = double(c[codes[j]]) / double(kSqrtG), wj = imp ? double(imp[j]) : 1.0;
          uv += wj * double(u[j]) * v;
          vv += wj * v * v;
        }
        r16_[i] = f32_to_f16(float(uv / std::max(vv, 1e-20)));
        rsel_[i] = f16_to_f32(r16_[i]);
      }
      rval_[i] = f16_to_f32(r16_[i]);
    }
  }
  float quantize(int64_t row, int64_t col, float v) override {
    const size_t i = size_t(row * nb_ + col / kG);
    const float rs = rsel_[i];
    const uint8_t code = rs != 0 ? cb_.nearest(v * kSqrtG / rs) : cb_.nearest(0.0f);
    codes_[size_t(row * nb_ * kG + col)] = code;
    return rval_[i] * cb_.centroids()[code] / kSqrtG;
  }
  float unit(int64_t row, int64_t col) const override {
    return cb_.centroids()[codes_[size_t(row * nb_ * kG + col)]] / kSqrtG;
  }
  float scale(int64_t row, int64_t g) const override { return rval_[size_t(row * nb_ + g)]; }
  float stored(float s) const override { return f16_to_f32(f32_to_f16(s)); }
  void set_scale(int64_t row, int64_t g, float s) override {  // codes are then chosen at the stored scale
    const size_t i = size_t(row * nb_ + g);
    r16_[i] = f32_to_f16(s);
    rsel_[i] = rval_[i] = f16_to_f32(r16_[i]);
  }
  const std::vector<uint16_t>& scales() const { return r16_; }
  const uint8_t* codes() const { return codes_.data(); }

 private:
  int64_t nb_;
  const HlwqCodebook& cb_;
  HlwqScale mode_;
  std::vector<uint16_t> r16_;     // [out, nb] fp16 scales as stored
  std::vector<float> rsel_, rval_;  // [out, nb] the scale codes are chosen at / the decoded (fp16) scale
  std::vector<uint8_t> codes_;    // [out, nb, 128]
};

// The re-fit of gptq.h: per row, A s = b with A_gh = q_gᵀ Hd_gh q_h and b_g = q_gᵀ (Hd w)_g (q_g the row's unit
// values on group g, w the original weights, both in the working domain, input order); the row's loss for
// scales s is sᵀ A s − 2 bᵀ s + wᵀ Hd w, so old and new (stored) scales are compared without recomputing ŵ.
// Rows run in fixed chunks, so the result does not depend on the thread count.
void refit_scales(const float* w, int64_t out, int64_t n, const GptqFactor& f, ScaledGrid& grid) {
  HLWQ_CHECK(f.H.size() == size_t(n * n), "gptq: the scale re-fit needs a factor made with GptqOptions::refit");
  const int64_t ng = n / kG;
  const double ridge = f.damp * f.mean_diag;
  const Eigen::Map<const MatD> H(f.H.data(), n, n);
  const int64_t n_chunks = (out + kRowChunk - 1) / kRowChunk;
  ParallelErrors errs;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t ch = 0; ch < n_chunks; ++ch) errs.run([&] {
    const int64_t r0 = ch * kRowChunk, R = std::min(kRowChunk, out - r0);
    MatD Wc(R, n), Q(R, n);  // [R, n] original weights, unit values of the chosen codes
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < n; ++j) {
        Wc(r, j) = w[(r0 + r) * n + j];
        Q(r, j) = grid.unit(r0 + r, j);
      }
    MatD HW = Wc * H;  // [R, n] (Hd w)ᵀ per row (H symmetric)
    HW += ridge * Wc;
    std::vector<MatD> A(size_t(R), MatD::Zero(ng, ng));  // per row [ng, ng]
    for (int64_t h = 0; h < ng; ++h) {
      MatD Y = Q.middleCols(h * kG, kG) * H.middleRows(h * kG, kG);  // [R, n] (Hd q_h)ᵀ per row
      Y.middleCols(h * kG, kG) += ridge * Q.middleCols(h * kG, kG);
      for (int64_t r = 0; r < R; ++r)
        for (int64_t g = 0; g < ng; ++g)
          A[size_t(r)](g, h) = Q.row(r).segment(g * kG, kG).dot(Y.row(r).segment(g * kG, kG));
    }
    Eigen::VectorXd b(ng), s0(ng), s(ng), sr(ng);
    for (int64_t r = 0; r < R; ++r) {
      MatD& Ar = A[size_t(r)];
      for (int64_t g = 0; g < ng; ++g) {
        b(g) = Q.row(r).segment(g * kG, kG).dot(HW.row(r).segment(g * kG, kG));
        s0(g) = grid.scale(r0 + r, g);
        if (Ar(g, g) <= 0) {  // every code of the group is 0: its scale changes nothing, keep it
          Ar.row(g).setZero();
          Ar.col(g).setZero();
          Ar(g, g) = 1;
          b(g) = s0(g);
        }
      }
      s = Ar.ldlt().solve(b);
      bool ok = s.allFinite();
      for (int64_t g = 0; g < ng && ok; ++g) {
        sr(g) = grid.stored(float(s(g)));
        ok = sr(g) > 0 && std::isfinite(sr(g));
      }
      if (!ok) continue;
      const double loss_old = s0.dot(Ar * s0) - 2 * b.dot(s0), loss_new = sr.dot(Ar * sr) - 2 * b.dot(sr);
      if (loss_new < loss_old)
        for (int64_t g = 0; g < ng; ++g) grid.set_scale(r0 + r, g, float(sr(g)));
    }
  });
  errs.rethrow();
}

// The column loop, then opt.refit rounds of re-fitting (later rounds: the column loop again at fixed scales).
void gptq_run(const float* w, int64_t out, int64_t n, const GptqFactor& f, const GptqOptions& opt, ScaledGrid& grid) {
  gptq_quantize(w, out, n, f, opt, grid);
  for (int round = 1; round <= opt.refit; ++round) {
    if (round > 1) {
      grid.fixed = true;
      gptq_quantize(w, out, n, f, opt, grid);
    }
    refit_scales(w, out, n, f, grid);
  }
}

}  // namespace

GptqFactor gptq_factor(const double* H, int64_t n, const GptqOptions& opt) {
  HLWQ_CHECK(n > 0, "gptq_factor: empty Hessian");
  const Eigen::Map<const MatD> Hm(H, n, n);
  HLWQ_CHECK(Hm.allFinite(), "gptq_factor: the input statistics [{}, {}] are not finite", n, n);
  GptqFactor f;
  f.n = n;
  Eigen::VectorXd d = Hm.diagonal();
  for (int64_t i = 0; i < n; ++i)
    if (d(i) <= 0) d(i) = 1;  // an input that was always zero: its column feeds nothing forward
  f.perm.resize(size_t(n));
  std::iota(f.perm.begin(), f.perm.end(), 0);
  if (opt.act_order)
    std::stable_sort(f.perm.begin(), f.perm.end(), [&](int32_t a, int32_t b) { return d(a) > d(b); });
  MatD A(n, n);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < n; ++j) A(i, j) = i == j ? d(f.perm[size_t(i)]) : Hm(f.perm[size_t(i)], f.perm[size_t(j)]);
  const double mean = d.mean();
  if (opt.refit > 0) {  // the loss the re-fit minimizes, in input order (dead inputs as in the factor)
    f.H.assign(H, H + n * n);
    for (int64_t i = 0; i < n; ++i) f.H[size_t(i * n + i)] = d(i);
  }
  f.mean_diag = mean;
  for (int attempt = 0; attempt <= kDampRetries; ++attempt) {
    const double lam = opt.damp * std::pow(10.0, attempt);
    MatD Ad = A;
    Ad.diagonal().array() += lam * mean;
    const Eigen::LLT<MatD> llt(Ad);
    if (llt.info() != Eigen::Success) continue;
    const MatD inv = llt.solve(MatD::Identity(n, n));
    const Eigen::LLT<MatD> llt_inv(inv);
    if (llt_inv.info() != Eigen::Success) continue;
    const MatD U = llt_inv.matrixU();
    if (!U.allFinite()) continue;
    f.U.resize(size_t(n * n));
    Eigen::Map<MatF>(f.U.data(), n, n) = U.cast<float>();
    f.damp = lam;
    return f;
  }
  fail("gptq_factor: the input statistics [{}, {}] are not positive definite even with damping {}", n, n,
       opt.damp * std::pow(10.0, kDampRetries));
}

std::vector<double> hlwq_rotate_hessian(const double* H, int64_t in) {
  const int64_t nb = (in + kG - 1) / kG, np = nb * kG;
  std::vector<double> R(size_t(np * np), 0.0);  // [np, np]
  for (int64_t i = 0; i < in; ++i) std::copy(H + i * in, H + (i + 1) * in, R.begin() + i * np);
  // R H R: every row's blocks, then every column's (H symmetric, so transform rows, transpose, transform again)
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t i = 0; i < np; ++i)
      for (int64_t b = 0; b < nb; ++b) fwht128_double(R.data() + i * np + b * kG);
    Eigen::Map<MatD> M(R.data(), np, np);
    M.transposeInPlace();
  }
  return R;
}

void gptq_quantize(const float* w, int64_t out, int64_t n, const GptqFactor& f, const GptqOptions& opt, GptqGrid& grid) {
  HLWQ_CHECK(f.n == n && f.U.size() == size_t(n * n) && f.perm.size() == size_t(n),
             "gptq_quantize: factor for {} inputs, weight has {}", f.n, n);
  HLWQ_CHECK(out > 0 && n % kG == 0, "gptq_quantize: shape [{}, {}] needs whole groups of {}", out, n, kG);
  bool identity = true;
  for (int64_t j = 0; j < n; ++j) identity &= f.perm[size_t(j)] == j;
  // With act-order the columns of a group are reached at scattered times: its scale must exist before.
  const bool before = opt.scales == GptqScales::before || !identity;
  const Eigen::Map<const MatF> U(f.U.data(), n, n);
  std::vector<float> imp;  // [n] input order: 1/U_jj² of the column's working position
  if (opt.weighted_scales) {
    imp.resize(size_t(n));
    for (int64_t j = 0; j < n; ++j) imp[size_t(f.perm[size_t(j)])] = 1.0f / (U(j, j) * U(j, j));
  }
  auto imp_of = [&](int64_t g) { return imp.empty() ? nullptr : imp.data() + g * kG; };
  const int64_t n_chunks = (out + kRowChunk - 1) / kRowChunk;
  ParallelErrors errs;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t ch = 0; ch < n_chunks; ++ch) errs.run([&] {
    const int64_t r0 = ch * kRowChunk, R = std::min(kRowChunk, out - r0);
    if (before)
      for (int64_t g = 0; g < n / kG; ++g) grid.choose_scales(r0, R, g, w + r0 * n + g * kG, n, imp_of(g));
    MatF W(R, n);  // [R, n] the chunk's rows, columns in working order, updated as errors feed forward
    for (int64_t r = 0; r < R; ++r)
      for (int64_t j = 0; j < n; ++j) W(r, j) = w[(r0 + r) * n + f.perm[size_t(j)]];
    MatF E(R, kG);  // [R, block] scaled errors of the block's columns
    for (int64_t b0 = 0; b0 < n; b0 += kG) {
      const int64_t b1 = std::min(n, b0 + kG), nb = b1 - b0;
      if (!before) grid.choose_scales(r0, R, b0 / kG, W.data() + b0, n, imp_of(b0 / kG));  // block = group
      for (int64_t j = b0; j < b1; ++j) {
        const int64_t col = f.perm[size_t(j)];
        const float d = U(j, j);
        for (int64_t r = 0; r < R; ++r) {
          const float v = W(r, j);
          E(r, j - b0) = (v - grid.quantize(r0 + r, col, v)) / d;
        }
        if (j + 1 < b1) W.block(0, j + 1, R, b1 - j - 1).noalias() -= E.col(j - b0) * U.block(j, j + 1, 1, b1 - j - 1);
      }
      // the lazy update: the block's errors reach every later column at once (one GEMM instead of nb rank-1s)
      if (b1 < n) W.rightCols(n - b1).noalias() -= E.leftCols(nb) * U.block(b0, b1, nb, n - b1);
    }
  });
  errs.rethrow();
}

Int4Result gptq_int4(const float* w, int64_t out, int64_t in, const GptqFactor& f, const GptqOptions& opt) {
  HLWQ_CHECK(out > 0 && in > 0 && in % kG == 0, "gptq_int4: shape [{}, {}] needs in % {} == 0", out, in, kG);
  HLWQ_CHECK(all_finite(w, out * in), "gptq_int4: non-finite weight in [{}, {}]", out, in);
  Int4Grid grid(out, in);
  gptq_run(w, out, in, f, opt, grid);
  Int4Result r;
  r.out = out;
  r.in = in;
  r.scale = grid.scales();
  r.packed.resize(size_t(out * (in / kInt4PerWord)));
  std::vector<float> deq(static_cast<size_t>(in));
  for (int64_t o = 0; o < out; ++o) {
    const int8_t* q = grid.q() + o * in;
    for (int64_t j = 0; j < in / kInt4PerWord; ++j)
      r.packed[size_t(o * (in / kInt4PerWord) + j)] = int32_t(int4_pack_word(q + j * kInt4PerWord));
    for (int64_t k = 0; k < in; ++k) deq[size_t(k)] = float(q[k]) * bf16_to_f32(r.scale[size_t(o * (in / kG) + k / kG)]);
    r.error += weight_error(w + o * in, deq.data(), in);
  }
  return r;
}

HlwqPacked gptq_hlwq(const float* w, int64_t out, int64_t in, const GptqFactor& f, const GptqOptions& opt,
                     const HlwqCodebook& cb, int bits, HlwqScale mode) {
  HLWQ_CHECK(out > 0 && in > 0, "gptq_hlwq: bad shape [{}, {}]", out, in);
  HLWQ_CHECK(bits >= 2 && bits <= 8 && cb.n_levels() == (1 << bits),
             "gptq_hlwq: a {}-bit code needs a {}-level codebook, got {}", bits, 1 << bits, cb.n_levels());
  HLWQ_CHECK(all_finite(w, out * in), "gptq_hlwq: non-finite weight in [{}, {}]", out, in);
  const int64_t nb = (in + kG - 1) / kG, np = nb * kG;
  std::vector<float> wr(size_t(out * np), 0.0f);  // [out, np] the rows padded and rotated block by block
  for (int64_t o = 0; o < out; ++o) {
    std::copy(w + o * in, w + (o + 1) * in, wr.begin() + o * np);
    fwht128_batch(wr.data() + o * np, nb);
  }
  HlwqGrid grid(out, np, cb, mode);
  gptq_run(wr.data(), out, np, f, opt, grid);
  HlwqPacked r;
  r.out = out;
  r.in = in;
  r.bits = bits;
  r.n_blocks = nb;
  const int64_t rb = nb * 16 * bits;
  r.codes.resize(size_t(out * rb));
  r.norms = grid.scales();
  alignas(64) float buf[kG];
  for (int64_t o = 0; o < out; ++o)
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t bi = o * nb + b, k0 = b * kG, len = std::min(kG, in - k0);
      const uint8_t* codes = grid.codes() + bi * kG;
      hlwq_pack_codes(codes, kG, bits, HlwqBitOrder::lsb_first, r.codes.data() + o * rb + b * 16 * bits);
      hlwq_decode_block(codes, r.norms[size_t(bi)], cb, buf);
      r.error += weight_error(w + o * in + k0, buf, len);
    }
  return r;
}

WeightError output_error(const float* w, const float* wq, int64_t out, int64_t in, const double* H) {
  const Eigen::Map<const MatF> W(w, out, in), Q(wq, out, in);
  const Eigen::Map<const MatD> Hm(H, in, in);
  const MatD Wd = W.cast<double>(), D = Q.cast<double>() - Wd;
  return {((D * Hm).cwiseProduct(D)).sum(), ((Wd * Hm).cwiseProduct(Wd)).sum()};
}

}  // namespace hlwq
