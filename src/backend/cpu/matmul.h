// y = x Wᵀ for every LinearWeight format (dense BF16/F16/F32, INT4 u4b8_g128), fp32 activations.
// Many tokens (prefill): weights are decoded to fp32 a panel of kPanelRows rows at a time and reused across all
// tokens of the call, so a prefill of T tokens reads each weight once per token chunk, not once per token.
// Few tokens (T ≤ kGemvMaxTokens, decode): BF16 and INT4 weights go through the fused gemv kernels, which widen
// each weight in registers and read it once per kGemvTokens tokens.
// Temporary buffers come from the CpuCtx scratch arenas (linear_scratch_floats per thread): nothing allocates.
// Dimension legend: T tokens, in = W columns, out = W rows.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_ctx.h"
#include "model/weights.h"

namespace hlwq {

// Widest INT4 (u4b8_g128) linear the CPU kernels take, in groups of 128 columns: linear_decode_rows converts one
// row's scales into a stack buffer of this many floats (16 KiB). 4096 groups = in ≤ 524288 columns, far past any
// real model (linear inputs are hidden, expert or head widths: thousands to tens of thousands); the loader
// rejects wider tensors by name, so the kernels only assert it.
constexpr int64_t kMaxInt4Groups = 4096;

// Up to this many tokens a linear runs the fused gemv kernels, kGemvTokens tokens at a time (re-reading the
// weights once per kGemvTokens tokens); above it, weight panels are dequantized to fp32 once and reused by every
// token. Dequantizing and transposing a panel costs about as much as reading it 8 times, so the gemv wins up to
// ~24 tokens: decode batches of up to 16 sequences stay on it (measured: BENCHMARKS.md, batched decode).
constexpr int64_t kGemvMaxTokens = 16;

// Scratch floats one thread needs for any linear of at most in_max columns (and gemm_f32 with K ≤ in_max).
size_t linear_scratch_floats(int64_t in_max);

// y [T, out] = x [T, in] · Wᵀ. Parallel (OpenMP) over row panels and token chunks. Under c.bf16_inputs x is
// rounded to bf16 first; linear_rows takes x as given (its callers, the experts', round the rows they gather).
void linear_forward(const CpuCtx& c, const LinearWeight& w, const float* x, int64_t T, float* y);

// Rows [r0, r0 + nr) of y = x Wᵀ on the calling thread: y[t·ldy + (r − r0)] for x [T, in] with row stride ldx.
// The unit of work of the MoE (expert, row block) split.
void linear_rows(const CpuCtx& c, const LinearWeight& w, int64_t r0, int64_t nr, const float* x, int64_t ldx,
                 int64_t T, float* y, int64_t ldy);

// C [M, N] = A [M, K] · B, fp32, single-threaded (callers parallelize over heads). B is [K, N] with row stride
// ldb, or with b_trans the transpose of a [N, K] matrix with row stride ldb (e.g. cached keys for Q Kᵀ).
void gemm_f32(const CpuCtx& c, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const float* B,
              int64_t ldb, bool b_trans, float* C, int64_t ldc);

// dst [nr, in] = fp32 rows [r0, r0 + nr) of W (dequantized for INT4; needs in / 128 ≤ kMaxInt4Groups).
void linear_decode_rows(const CpuKernels& k, const LinearWeight& w, int64_t r0, int64_t nr, float* dst);

}  // namespace hlwq
