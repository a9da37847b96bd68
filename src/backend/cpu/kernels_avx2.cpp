// AVX2+FMA kernels. Each function carries __attribute__((target("avx2,fma"))) so the file builds without
// -mavx2 and the rest of the library stays portable; cpu_kernels() hands these out only after
// __builtin_cpu_supports confirms the instructions exist.
#include <immintrin.h>

#include <cstring>

#include "backend/cpu/kernels.h"

#define HLWQ_AVX2 __attribute__((target("avx2,fma")))

namespace hlwq {
namespace {

HLWQ_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

HLWQ_AVX2 void bf16_to_f32_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(u, 16)));
  }
  for (; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + i, 2);
    uint32_t u = uint32_t(h) << 16;
    std::memcpy(dst + i, &u, 4);
  }
}

HLWQ_AVX2 void u4b8_row_to_f32_avx2(const uint8_t* packed, const float* scale, float* dst, int64_t in) {
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i mask = _mm256_set1_epi32(0xF), eight = _mm256_set1_epi32(8);
  for (int64_t j = 0; j < in / 8; ++j) {
    int32_t w;
    std::memcpy(&w, packed + 4 * j, 4);
    __m256i q = _mm256_sub_epi32(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w), shifts), mask), eight);
    _mm256_storeu_ps(dst + 8 * j, _mm256_mul_ps(_mm256_cvtepi32_ps(q), _mm256_set1_ps(scale[j / 16])));
  }
}

HLWQ_AVX2 float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
  }
  for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
  float s = hsum(_mm256_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

HLWQ_AVX2 void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

HLWQ_AVX2 inline void store_row(float* y, __m256 lo, __m256 hi, int64_t nr) {
  if (nr == kPanelRows) {
    _mm256_storeu_ps(y, lo);
    _mm256_storeu_ps(y + 8, hi);
    return;
  }
  alignas(32) float tmp[kPanelRows];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  std::memcpy(y, tmp, size_t(nr) * sizeof(float));
}

// NT tokens × 16 rows. The 2·NT accumulators are named scalars, not an array: GCC keeps an array of __m256
// in memory and stores it every iteration, which halves the FMA rate.
template <int NT>
HLWQ_AVX2 void gemm_panel_tile(const float* P, const float* X, int64_t ldx, int64_t in, float* Y, int64_t ldy,
                               int64_t nr) {
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
         c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t k = 0; k < in; ++k) {
    const __m256 w0 = _mm256_loadu_ps(P + k * kPanelRows), w1 = _mm256_loadu_ps(P + k * kPanelRows + 8);
#define HLWQ_STEP(t)                                              \
  if constexpr (NT > t) {                                         \
    const __m256 xb = _mm256_broadcast_ss(X + t * ldx + k);       \
    c##t##0 = _mm256_fmadd_ps(xb, w0, c##t##0);                   \
    c##t##1 = _mm256_fmadd_ps(xb, w1, c##t##1);                   \
  }
    HLWQ_STEP(0) HLWQ_STEP(1) HLWQ_STEP(2) HLWQ_STEP(3) HLWQ_STEP(4) HLWQ_STEP(5)
#undef HLWQ_STEP
  }
  store_row(Y, c00, c01, nr);
  if constexpr (NT > 1) store_row(Y + 1 * ldy, c10, c11, nr);
  if constexpr (NT > 2) store_row(Y + 2 * ldy, c20, c21, nr);
  if constexpr (NT > 3) store_row(Y + 3 * ldy, c30, c31, nr);
  if constexpr (NT > 4) store_row(Y + 4 * ldy, c40, c41, nr);
  if constexpr (NT > 5) store_row(Y + 5 * ldy, c50, c51, nr);
}

HLWQ_AVX2 void gemm_panel_avx2(const float* P, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y,
                               int64_t ldy, int64_t nr) {
  switch (nt) {
    case 1: return gemm_panel_tile<1>(P, X, ldx, in, Y, ldy, nr);
    case 2: return gemm_panel_tile<2>(P, X, ldx, in, Y, ldy, nr);
    case 3: return gemm_panel_tile<3>(P, X, ldx, in, Y, ldy, nr);
    case 4: return gemm_panel_tile<4>(P, X, ldx, in, Y, ldy, nr);
    case 5: return gemm_panel_tile<5>(P, X, ldx, in, Y, ldy, nr);
    default: return gemm_panel_tile<6>(P, X, ldx, in, Y, ldy, nr);
  }
}

// ---- fused gemv (few tokens): R weight rows × NT tokens per tile, all sums in registers ----
// The row and token loops below have compile-time bounds and are fully unrolled, so GCC keeps acc[][] in
// registers (checked: the bf16 tile streams at the memory ceiling, see BENCHMARKS.md "CPU inference").

// 8 bf16 → 8 fp32: zero-extend to 32 bits and shift into the high half (bf16 is the top half of an fp32).
HLWQ_AVX2 inline __m256 load_bf16x8(const uint16_t* p) {
  const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}

template <int NT, int R>
HLWQ_AVX2 void gemv_bf16_tile(const uint16_t* W, const float* X, int64_t ldx, int64_t in, float* Y, int64_t ldy) {
  __m256 acc[R][NT];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= in; k += 8) {
    __m256 xv[NT];
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(X + t * ldx + k);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 w = load_bf16x8(W + r * in + k);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(w, xv[t], acc[r][t]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) {
      float s = hsum(acc[r][t]);
      for (int64_t kk = k; kk < in; ++kk) {
        uint16_t h;
        std::memcpy(&h, W + r * in + kk, 2);
        const uint32_t u = uint32_t(h) << 16;
        float wf;
        std::memcpy(&wf, &u, 4);
        s += wf * X[t * ldx + kk];
      }
      Y[t * ldy + r] = s;
    }
}

// R rows at a time while they last, then single rows. R shrinks as NT grows to stay within 16 ymm registers.
template <int NT>
HLWQ_AVX2 void gemv_bf16_rows(const uint16_t* W, const float* X, int64_t ldx, int64_t in, float* Y, int64_t ldy,
                              int64_t nr) {
  constexpr int R = NT == 3 ? 2 : 4;
  int64_t r = 0;
  for (; r + R <= nr; r += R) gemv_bf16_tile<NT, R>(W + r * in, X, ldx, in, Y + r, ldy);
  for (; r < nr; ++r) gemv_bf16_tile<NT, 1>(W + r * in, X, ldx, in, Y + r, ldy);
}

HLWQ_AVX2 void gemv_bf16_avx2(const uint16_t* W, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y,
                              int64_t ldy, int64_t nr) {
  switch (nt) {
    case 1: return gemv_bf16_rows<1>(W, X, ldx, in, Y, ldy, nr);
    case 2: return gemv_bf16_rows<2>(W, X, ldx, in, Y, ldy, nr);
    default: return gemv_bf16_rows<3>(W, X, ldx, in, Y, ldy, nr);
  }
}

// INT4: a row's nibbles, lowest first, are weights k, k + 1, … Each group of 128 inputs is summed unscaled, then
// multiplied by its scale once: Σ_g s_g · Σ_{k∈g} (q_k − 8) x_k, the same products as the reference up to rounding
// order. 32 bytes of a row (64 weights) are widened at once: the low and the high nibbles masked out as bytes,
// interleaved back into weight order, 8 subtracted, then 8 at a time sign-extended and converted (~4 instructions
// per 8 weights, where a broadcast, a per-lane shift, a mask, a subtract and a convert of each 4-byte word took 6;
// 3–7 % less time on the 2-vCPU EPYC of BENCHMARKS.md). Lane l of a group's sum still takes the weights
// k ≡ l (mod 8) in order, so the results are bit for bit those of the word-at-a-time form.

// a row's 32 bytes: per 128-bit lane, a = the weights of its bytes 0–7 and b = of its bytes 8–15, in order, as int8 q − 8
HLWQ_AVX2 inline void u4b8_widen32(const uint8_t* p, __m256i& a, __m256i& b) {
  const __m256i low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i lo = _mm256_and_si256(v, low), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);
  a = _mm256_sub_epi8(_mm256_unpacklo_epi8(lo, hi), eight);
  b = _mm256_sub_epi8(_mm256_unpackhi_epi8(lo, hi), eight);
}

// weights 8c … 8c + 7 of the 64 that u4b8_widen32 left in a and b, as fp32
HLWQ_AVX2 inline __m256 u4b8_chunk(const __m256i& a, const __m256i& b, int c) {
  const __m256i& v = (c >> 1) & 1 ? b : a;                                   // 16-weight parts: a.lo, b.lo, a.hi, b.hi
  const __m128i half = c >= 4 ? _mm256_extracti128_si256(v, 1) : _mm256_castsi256_si128(v);
  const __m128i bytes = c & 1 ? _mm_unpackhi_epi64(half, half) : half;
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

template <int NT, int R>
HLWQ_AVX2 void gemv_u4b8_tile(const uint8_t* packed, const float* scale, const float* X, int64_t ldx, int64_t in,
                              float* Y, int64_t ldy) {
  const int64_t ng = in / 128, row_bytes = in / 2;
  __m256 acc[R][NT];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_setzero_ps();
  for (int64_t g = 0; g < ng; ++g) {
    __m256 gacc[R][NT];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) gacc[r][t] = _mm256_setzero_ps();
    // Prefetch the next tile's group (R·64 bytes, as much as this group reads): the hardware prefetcher alone
    // leaves decode and memory time adding up instead of overlapping (measured +40% from DRAM on Zen 3).
    const uint8_t* ahead = packed + R * row_bytes + g * R * 64;
#pragma GCC unroll 4
    for (int l = 0; l < R; ++l) _mm_prefetch(reinterpret_cast<const char*>(ahead + 64 * l), _MM_HINT_T0);
#pragma GCC unroll 2
    for (int half = 0; half < 2; ++half) {  // 64 weights of each of the R rows at a time
      __m256i wa[R], wb[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) u4b8_widen32(packed + r * row_bytes + g * 64 + 32 * half, wa[r], wb[r]);
#pragma GCC unroll 8
      for (int c = 0; c < 8; ++c) {
        const int64_t k = g * 128 + 64 * half + 8 * c;
        __m256 xv[NT];
#pragma GCC unroll 4
        for (int t = 0; t < NT; ++t) xv[t] = _mm256_loadu_ps(X + t * ldx + k);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          const __m256 w = u4b8_chunk(wa[r], wb[r], c);
#pragma GCC unroll 4
          for (int t = 0; t < NT; ++t) gacc[r][t] = _mm256_fmadd_ps(w, xv[t], gacc[r][t]);
        }
      }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const __m256 s = _mm256_set1_ps(scale[r * ng + g]);
#pragma GCC unroll 4
      for (int t = 0; t < NT; ++t) acc[r][t] = _mm256_fmadd_ps(gacc[r][t], s, acc[r][t]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int t = 0; t < NT; ++t) Y[t * ldy + r] = hsum(acc[r][t]);
}

template <int NT>
HLWQ_AVX2 void gemv_u4b8_rows(const uint8_t* packed, const float* scale, const float* X, int64_t ldx, int64_t in,
                              float* Y, int64_t ldy, int64_t nr) {
  constexpr int R = NT == 1 ? 4 : NT == 2 ? 2 : 1;  // 2·R·NT sums + NT inputs + 4 constants/temporaries ≤ 16
  const int64_t ng = in / 128, row_bytes = in / 2;
  int64_t r = 0;
  for (; r + R <= nr; r += R) gemv_u4b8_tile<NT, R>(packed + r * row_bytes, scale + r * ng, X, ldx, in, Y + r, ldy);
  for (; r < nr; ++r) gemv_u4b8_tile<NT, 1>(packed + r * row_bytes, scale + r * ng, X, ldx, in, Y + r, ldy);
}

HLWQ_AVX2 void gemv_u4b8_avx2(const uint8_t* packed, const float* scale, const float* X, int64_t ldx, int64_t nt,
                              int64_t in, float* Y, int64_t ldy, int64_t nr) {
  switch (nt) {
    case 1: return gemv_u4b8_rows<1>(packed, scale, X, ldx, in, Y, ldy, nr);
    case 2: return gemv_u4b8_rows<2>(packed, scale, X, ldx, in, Y, ldy, nr);
    default: return gemv_u4b8_rows<3>(packed, scale, X, ldx, in, Y, ldy, nr);
  }
}

}  // namespace

const CpuKernels& cpu_kernels_avx2() {
  static constexpr CpuKernels k{"avx2",          bf16_to_f32_avx2, u4b8_row_to_f32_avx2, dot_avx2, axpy_avx2,
                                gemm_panel_avx2, gemv_bf16_avx2,   gemv_u4b8_avx2};
  return k;
}

}  // namespace hlwq
