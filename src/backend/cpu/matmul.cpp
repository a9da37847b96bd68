// linear_forward: panel-packed GEMM over the CpuKernels micro-kernels (see matmul.h).
#include "backend/cpu/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cassert>
#include <vector>

#include "core/dtype.h"
#include "core/parallel_errors.h"
#include "quant/hlwq_linear.h"

namespace hlwq {

// Below ~1M multiply-adds (≈ 50 µs on one core) a matmul runs on the calling thread: a fork-join costs
// microseconds on idle cores but up to a scheduler tick when the cores are shared, and decode of a small
// model is hundreds of tiny matmuls.
constexpr int64_t kParallelMinMacs = int64_t(1) << 20;

// HLWQ decode (T ≤ kGemvTokens) takes its rotated activations [T, ⌈in/128⌉·128] after the rows buffer: at most
// 3·(in + 127) floats, covered by the panel buffer's share for in ≥ 26 and by the extra 3·128 below.
// rows [kPanelRows, in] + the larger of the prefill panel [kPanelRows, in] and the HLWQ rotated activations
// [kGemvMaxTokens, in padded to 128] (the two are never taken together), + alignment slack
size_t linear_scratch_floats(int64_t in_max) {
  return size_t(kPanelRows * in_max + std::max(kPanelRows * in_max, kGemvMaxTokens * (in_max + 128)) + 64);
}

namespace {

// The HLWQ kernels matching the CPU kernel set (AVX2 needs F16C too; hlwq_kernels falls back to scalar).
const HlwqKernels& hlwq_k(const CpuKernels& k) { return hlwq_kernels(std::string_view(k.isa) == "avx2"); }

}  // namespace

void linear_decode_rows(const CpuKernels& k, const LinearWeight& w, int64_t r0, int64_t nr, float* dst) {
  const int64_t in = w.in;
  if (w.format == LinearFormat::dense) {
    const size_t es = dtype_size(w.weight.dtype);
    const uint8_t* src = static_cast<const uint8_t*>(w.weight.data) + size_t(r0 * in) * es;
    if (w.weight.dtype == DType::BF16) k.bf16_to_f32(reinterpret_cast<const uint16_t*>(src), dst, nr * in);
    else convert_to_f32(w.weight.dtype, src, dst, size_t(nr * in));
    return;
  }
  if (w.format == LinearFormat::hlwq) return hlwq_k(k).decode_rows(w.hlwq, r0, nr, dst);  // weight domain
  const int64_t ng = in / 128;
  const size_t ss = dtype_size(w.scale.dtype);
  // Runs inside parallel regions, where a throw would terminate: the loader has already rejected wider
  // tensors by name (see kMaxInt4Groups), so this only guards hand-built weights in debug builds.
  assert(ng <= kMaxInt4Groups && "INT4 linear wider than kMaxInt4Groups: the loader should have refused it");
  float scale_row[kMaxInt4Groups];  // this row's in / 128 scales in fp32
  for (int64_t r = 0; r < nr; ++r) {
    const int64_t row = r0 + r;
    convert_to_f32(w.scale.dtype, static_cast<const uint8_t*>(w.scale.data) + size_t(row * ng) * ss, scale_row,
                   size_t(ng));
    k.u4b8_row_to_f32(static_cast<const uint8_t*>(w.packed.data) + size_t(row * (in / 8)) * 4, scale_row,
                      dst + r * in, in);
  }
}

void gemm_f32(const CpuCtx& c, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, bool b_trans, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  Scratch& s = c.scratch.mine();
  ScratchMark mark(s);
  float* panel = s.take(size_t(K * kPanelRows));  // [K, 16] columns n0 .. n0+15 of B, zero-padded
  for (int64_t n0 = 0; n0 < N; n0 += kPanelRows) {
    const int64_t nc = std::min(kPanelRows, N - n0);
    if (nc < kPanelRows) std::fill(panel, panel + K * kPanelRows, 0.f);
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t j = 0; j < nc; ++j)
        panel[kk * kPanelRows + j] = b_trans ? B[(n0 + j) * ldb + kk] : B[kk * ldb + n0 + j];
    for (int64_t m = 0; m < M; m += kPanelTokens)
      c.k.gemm_panel(panel, A + m * lda, lda, std::min(kPanelTokens, M - m), K, C + m * ldc + n0, ldc, nc);
  }
}

void linear_rows(const CpuCtx& c, const LinearWeight& w, int64_t r0, int64_t nr, const float* x, int64_t ldx,
                 int64_t T, float* y, int64_t ldy) {
  const CpuKernels& k = c.k;
  const int64_t in = w.in, ng = in / 128;
  const bool bf16 = w.format == LinearFormat::dense && w.weight.dtype == DType::BF16;
  const bool int4 = w.format == LinearFormat::u4b8_g128;
  const bool hlwq = w.format == LinearFormat::hlwq && T <= kGemvTokens;
  Scratch& s = c.scratch.mine();
  ScratchMark mark(s);
  // gemv: int4 scales [kPanelRows, in/128] or non-bf16 rows [kPanelRows, in]; panel path: rows + panel
  float* rows = s.take(size_t(kPanelRows * in));
  float* panel = T > kGemvMaxTokens ? s.take(size_t(kPanelRows * in)) : nullptr;
  // HLWQ decode: the activations rotated once for all the call's rows (one FWHT per 128 inputs and token)
  const HlwqKernels* hk = hlwq ? &hlwq_k(k) : nullptr;
  const int64_t inp = hlwq ? w.hlwq.in_padded() : 0;
  float* xp = hlwq ? s.take(size_t(T * inp)) : nullptr;  // [T, inp]
  for (int64_t t = 0; hlwq && t < T; ++t) hk->prepare(x + t * ldx, in, w.hlwq.bits, xp + t * inp);
  for (int64_t p0 = r0; p0 < r0 + nr; p0 += kPanelRows) {
    const int64_t np = std::min(kPanelRows, r0 + nr - p0);
    float* yp = y + (p0 - r0);
    if (T <= kGemvMaxTokens) {
      // Few tokens (decode): per block of kPanelRows rows, a fused gemv for BF16 and INT4 weights (widened in
      // registers, so each weight byte is read once per kGemvTokens tokens and nothing is written back); other
      // dtypes decode the block to fp32, then one dot product per (row, token). Decode is bound by reading weights.
      if (bf16) {
        for (int64_t t = 0; t < T; t += kGemvTokens)
          k.gemv_bf16(static_cast<const uint16_t*>(w.weight.data) + p0 * in, x + t * ldx, ldx,
                      std::min(kGemvTokens, T - t), in, yp + t * ldy, ldy, np);
      } else if (hlwq) {
        for (int64_t t = 0; t < T; t += kGemvTokens)
          hk->gemv(w.hlwq, p0, np, xp + t * inp, inp, std::min(kGemvTokens, T - t), yp + t * ldy, ldy);
      } else if (int4) {
        // scale rows are contiguous: the block's [np, in/128] scales convert in one call
        const size_t ss = dtype_size(w.scale.dtype);
        convert_to_f32(w.scale.dtype, static_cast<const uint8_t*>(w.scale.data) + size_t(p0 * ng) * ss, rows,
                       size_t(np * ng));
        for (int64_t t = 0; t < T; t += kGemvTokens)
          k.gemv_u4b8(static_cast<const uint8_t*>(w.packed.data) + size_t(p0 * in / 2), rows, x + t * ldx, ldx,
                      std::min(kGemvTokens, T - t), in, yp + t * ldy, ldy, np);
      } else {
        linear_decode_rows(k, w, p0, np, rows);
        for (int64_t r = 0; r < np; ++r)
          for (int64_t t = 0; t < T; ++t) yp[t * ldy + r] = k.dot(rows + r * in, x + t * ldx, in);
      }
      continue;
    }
    linear_decode_rows(k, w, p0, np, rows);
    // panel [in, kPanelRows]: row r of W becomes column r, missing rows are zero
    std::fill(panel, panel + kPanelRows * in, 0.f);
    for (int64_t r = 0; r < np; ++r)
      for (int64_t j = 0; j < in; ++j) panel[j * kPanelRows + r] = rows[r * in + j];
    for (int64_t t = 0; t < T; t += kPanelTokens)
      k.gemm_panel(panel, x + t * ldx, ldx, std::min(kPanelTokens, T - t), in, yp + t * ldy, ldy, np);
  }
}

void linear_forward(const CpuCtx& c, const LinearWeight& w, const float* x, int64_t T, float* y) {
  if (T <= 0) return;
  std::vector<float> rounded;  // only under bf16_inputs (the emulation of the GPU's numerics)
  if (c.bf16_inputs) {
    rounded.resize(size_t(T * w.in));
    for (size_t i = 0; i < rounded.size(); ++i) rounded[i] = linear_input(c, x[i]);
    x = rounded.data();
  }
  if (c.tap) (*c.tap)(w, x, w.in, T);
  const int64_t in = w.in, out = w.out, nrb = (out + kPanelRows - 1) / kPanelRows;
  const bool par = out * in * T >= kParallelMinMacs;
  ParallelErrors errs;  // a scratch or kernel error must reach the caller, not std::terminate
  if (T <= kGemvMaxTokens) {
    // Dynamic chunks of 4 blocks: when the cores are shared, a thread that is not scheduled leaves its rows to
    // the others instead of holding the whole call up (a static half would wait for it).
#pragma omp parallel for schedule(dynamic, 4) if (par)
    for (int64_t rb = 0; rb < nrb; ++rb) errs.run([&] {
      const int64_t r0 = rb * kPanelRows;
      linear_rows(c, w, r0, std::min(kPanelRows, out - r0), x, in, T, y + r0, out);
    });
    errs.rethrow();
    return;
  }
  // Inside an enclosing parallel region (MoE experts, attention heads) the region below is inactive and runs on
  // one thread, yet omp_get_max_threads() still reports the team size: size the split for the threads we get.
  const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Split tokens too when there are too few row panels to feed every thread (router, in_proj_a/b).
  int64_t ntb = std::max<int64_t>(1, (2 * nth + nrb - 1) / nrb);
  ntb = std::min(ntb, (T + 4 * kPanelTokens - 1) / (4 * kPanelTokens));
  const int64_t tchunk = (T + ntb - 1) / ntb;
#pragma omp parallel for collapse(2) schedule(dynamic) if (par)
  for (int64_t rb = 0; rb < nrb; ++rb)
    for (int64_t tb = 0; tb < ntb; ++tb) errs.run([&] {
      const int64_t r0 = rb * kPanelRows, t0 = tb * tchunk, t1 = std::min(T, t0 + tchunk);
      if (t0 < t1) linear_rows(c, w, r0, std::min(kPanelRows, out - r0), x + t0 * in, in, t1 - t0, y + t0 * out + r0, out);
    });
  errs.rethrow();
}

}  // namespace hlwq
