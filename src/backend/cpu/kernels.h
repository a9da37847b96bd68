// CPU inner kernels behind one table of function pointers, chosen at run time: a portable scalar set and an
// AVX2+FMA set (compiled with __attribute__((target)), picked only when __builtin_cpu_supports says so).
// The tables are immutable constants; callers hold a `const CpuKernels&` (the Model keeps one), so tests can
// run both sets side by side. Every kernel reads weights with unaligned loads: safetensors offsets are only
// byte-aligned in general.
// Dimension legend: in = input features (K of the matmul), nt = tokens in a micro-tile (≤ kPanelTokens, or
// ≤ kGemvTokens for the gemv kernels), nr = weight rows in a panel (≤ kPanelRows).
#pragma once
#include <cstdint>

namespace hlwq {

inline constexpr int64_t kPanelRows = 16;   // weight rows per packed panel (two AVX2 registers)
inline constexpr int64_t kPanelTokens = 6;  // tokens per micro-tile (6×2 accumulators + 2 weights + 1 broadcast)
inline constexpr int64_t kGemvTokens = 3;   // most tokens per gemv call (AVX2 tiles keep rows × tokens sums in registers)

struct CpuKernels {
  const char* isa;  // "scalar" or "avx2"
  // dst [n] = bf16 src [n]
  void (*bf16_to_f32)(const uint16_t* src, float* dst, int64_t n);
  // dst [in] = dequantized INT4 row: packed [in/8] little-endian words (u4b8, lowest nibble first),
  // scale [in/128] fp32; in % 128 == 0.
  void (*u4b8_row_to_f32)(const uint8_t* packed, const float* scale, float* dst, int64_t in);
  float (*dot)(const float* a, const float* b, int64_t n);
  void (*axpy)(float a, const float* x, float* y, int64_t n);  // y [n] += a · x [n]
  // Y[t, r] = Σ_k X[t, k] · P[k, r] for t < nt, r < nr.
  // P [in, kPanelRows] (weight rows interleaved, zero-padded), X [nt, in] with row stride ldx, Y row stride ldy.
  void (*gemm_panel)(const float* P, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y, int64_t ldy,
                     int64_t nr);
  // Fused matrix-vector products for few tokens (decode), reading weights as stored: each weight is widened to
  // fp32 in registers and used at once, never written out. Y[t, r] = Σ_k X[t, k] · W[r, k] for t < nt ≤
  // kGemvTokens, r < nr; X [nt, in] with row stride ldx, Y row stride ldy.
  // W: bf16 rows [nr, in], contiguous; any in.
  void (*gemv_bf16)(const uint16_t* W, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y, int64_t ldy,
                    int64_t nr);
  // W: u4b8_g128 rows, packed [nr, in/8] little-endian words (as u4b8_row_to_f32), scale [nr, in/128] fp32;
  // in % 128 == 0.
  void (*gemv_u4b8)(const uint8_t* packed, const float* scale, const float* X, int64_t ldx, int64_t nt, int64_t in,
                    float* Y, int64_t ldy, int64_t nr);
};

enum class CpuIsa : uint8_t { auto_detect, scalar, avx2 };

bool cpu_has_avx2_fma();
// The kernel set for isa; auto_detect gives avx2 when the CPU has it. Asking for avx2 on a CPU without it throws.
const CpuKernels& cpu_kernels(CpuIsa isa = CpuIsa::auto_detect);

// The two sets (defined in kernels_scalar.cpp / kernels_avx2.cpp).
const CpuKernels& cpu_kernels_scalar();
const CpuKernels& cpu_kernels_avx2();

}  // namespace hlwq
