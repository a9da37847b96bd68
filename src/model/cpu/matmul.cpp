// linear_forward: panel-packed GEMM over the CpuKernels micro-kernels (see matmul.h).
#include "model/cpu/matmul.h"

#include <omp.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/parallel_errors.h"

namespace hlwq {

// Below ~1M multiply-adds (≈ 50 µs on one core) a matmul runs on the calling thread: a fork-join costs
// microseconds on idle cores but up to a scheduler tick when the cores are shared, and decode of a small
// model is hundreds of tiny matmuls.
constexpr int64_t kParallelMinMacs = int64_t(1) << 20;

void linear_decode_rows(const CpuKernels& k, const LinearWeight& w, int64_t r0, int64_t nr, float* dst) {
  const int64_t in = w.in;
  if (w.format == LinearFormat::dense) {
    const size_t es = dtype_size(w.weight.dtype);
    const uint8_t* src = static_cast<const uint8_t*>(w.weight.data) + size_t(r0 * in) * es;
    if (w.weight.dtype == DType::BF16) k.bf16_to_f32(reinterpret_cast<const uint16_t*>(src), dst, nr * in);
    else convert_to_f32(w.weight.dtype, src, dst, size_t(nr * in));
    return;
  }
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

void gemm_f32(const CpuKernels& k, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, bool b_trans, float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  std::vector<float> panel(size_t(K * kPanelRows));  // [K, 16] columns n0 .. n0+15 of B, zero-padded
  for (int64_t n0 = 0; n0 < N; n0 += kPanelRows) {
    const int64_t nc = std::min(kPanelRows, N - n0);
    if (nc < kPanelRows) std::fill(panel.begin(), panel.end(), 0.f);
    for (int64_t kk = 0; kk < K; ++kk)
      for (int64_t c = 0; c < nc; ++c)
        panel[size_t(kk * kPanelRows + c)] = b_trans ? B[(n0 + c) * ldb + kk] : B[kk * ldb + n0 + c];
    for (int64_t m = 0; m < M; m += kPanelTokens)
      k.gemm_panel(panel.data(), A + m * lda, lda, std::min(kPanelTokens, M - m), K, C + m * ldc + n0, ldc, nc);
  }
}

namespace {

// Few tokens (decode): per block of kPanelRows rows, a fused gemv for BF16 and INT4 weights (widened in
// registers, so each weight byte is read once and nothing is written back); other dtypes decode the block to
// fp32, then one dot product per (row, token). Decode is bound by reading the weights: the lm_head alone is
// V·H bf16 per token.
void linear_forward_rows(const CpuKernels& k, const LinearWeight& w, const float* x, int64_t T, float* y) {
  const int64_t in = w.in, out = w.out, nrb = (out + kPanelRows - 1) / kPanelRows, ng = in / 128;
  const bool par = out * in * T >= kParallelMinMacs;
  const bool bf16 = w.format == LinearFormat::dense && w.weight.dtype == DType::BF16;
  const bool int4 = w.format == LinearFormat::u4b8_g128;
  const size_t ss = int4 ? dtype_size(w.scale.dtype) : 0;
  ParallelErrors errs;  // a bad_alloc of the scratch below must reach the caller, not std::terminate
#pragma omp parallel if (par)
  {
    // int4: scales [kPanelRows, in/128] in fp32; other non-bf16: rows [kPanelRows, in]
    std::vector<float> buf;
    errs.run([&] { buf.resize(size_t(bf16 ? 0 : int4 ? kPanelRows * ng : kPanelRows * in)); });
    // Dynamic chunks of 4 blocks: when the cores are shared, a thread that is not scheduled leaves its rows to
    // the others instead of holding the whole call up (a static half would wait for it).
#pragma omp for schedule(dynamic, 4)
    for (int64_t rb = 0; rb < nrb; ++rb) errs.run([&] {
      const int64_t r0 = rb * kPanelRows, nr = std::min(kPanelRows, out - r0);
      if (bf16) {
        const uint16_t* rows = static_cast<const uint16_t*>(w.weight.data) + r0 * in;  // [nr, in]
        for (int64_t t = 0; t < T; t += kGemvTokens)
          k.gemv_bf16(rows, x + t * in, in, std::min(kGemvTokens, T - t), in, y + t * out + r0, out, nr);
      } else if (int4) {
        // scale rows are contiguous: the block's [nr, in/128] scales convert in one call
        convert_to_f32(w.scale.dtype, static_cast<const uint8_t*>(w.scale.data) + size_t(r0 * ng) * ss, buf.data(),
                       size_t(nr * ng));
        const uint8_t* packed = static_cast<const uint8_t*>(w.packed.data) + size_t(r0 * in / 2);  // [nr, in/8] words
        for (int64_t t = 0; t < T; t += kGemvTokens)
          k.gemv_u4b8(packed, buf.data(), x + t * in, in, std::min(kGemvTokens, T - t), in, y + t * out + r0, out,
                      nr);
      } else {
        linear_decode_rows(k, w, r0, nr, buf.data());
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t t = 0; t < T; ++t) y[t * out + r0 + r] = k.dot(buf.data() + r * in, x + t * in, in);
      }
    });
  }
  errs.rethrow();
}

}  // namespace

void linear_forward(const CpuKernels& k, const LinearWeight& w, const float* x, int64_t T, float* y) {
  if (T <= 0) return;
  if (T <= kGemvTokens) return linear_forward_rows(k, w, x, T, y);
  const int64_t in = w.in, out = w.out, nrb = (out + kPanelRows - 1) / kPanelRows;
  // Inside an enclosing parallel region (MoE experts, attention heads) the region below is inactive and runs on
  // one thread, yet omp_get_max_threads() still reports the team size: size the split for the threads we get.
  const int nth = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Split tokens too when there are too few row panels to feed every thread (router, in_proj_a/b).
  int64_t ntb = std::max<int64_t>(1, (2 * nth + nrb - 1) / nrb);
  ntb = std::min(ntb, (T + 4 * kPanelTokens - 1) / (4 * kPanelTokens));
  const int64_t tchunk = (T + ntb - 1) / ntb;
  const bool par = out * in * T >= kParallelMinMacs;
  ParallelErrors errs;  // a bad_alloc of the scratch below must reach the caller, not std::terminate
#pragma omp parallel if (par)
  {
    std::vector<float> rows, panel;  // [kPanelRows, in] each
    errs.run([&] {
      rows.resize(size_t(kPanelRows * in));
      panel.resize(size_t(kPanelRows * in));
    });
#pragma omp for collapse(2) schedule(dynamic)
    for (int64_t rb = 0; rb < nrb; ++rb)
      for (int64_t tb = 0; tb < ntb; ++tb) errs.run([&] {
        const int64_t r0 = rb * kPanelRows, nr = std::min(kPanelRows, out - r0);
        const int64_t t0 = tb * tchunk, t1 = std::min(T, t0 + tchunk);
        if (t0 >= t1) return;
        linear_decode_rows(k, w, r0, nr, rows.data());
        // panel [in, kPanelRows]: row r of W becomes column r, missing rows are zero
        std::fill(panel.begin(), panel.end(), 0.f);
        for (int64_t r = 0; r < nr; ++r)
          for (int64_t c = 0; c < in; ++c) panel[size_t(c * kPanelRows + r)] = rows[size_t(r * in + c)];
        for (int64_t t = t0; t < t1; t += kPanelTokens)
          k.gemm_panel(panel.data(), x + t * in, in, std::min(kPanelTokens, t1 - t), in, y + t * out + r0, out, nr);
      });
  }
  errs.rethrow();
}

}  // namespace hlwq
