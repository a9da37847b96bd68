// Portable scalar kernels: the reference the AVX2 set is tested against (tests/model/test_kernels.cpp).
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "backend/cpu/kernels.h"

namespace hlwq {
namespace {

void bf16_to_f32_scalar(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, src + i, 2);
    dst[i] = bf16_to_f32(h);
  }
}

void u4b8_row_to_f32_scalar(const uint8_t* packed, const float* scale, float* dst, int64_t in) {
  for (int64_t j = 0; j < in / 8; ++j) {
    uint32_t w;
    std::memcpy(&w, packed + 4 * j, 4);
    const float s = scale[j / 16];  // 16 words = 128 inputs per scale
    for (int i = 0; i < 8; ++i) dst[8 * j + i] = float(int((w >> (4 * i)) & 0xFu) - 8) * s;
  }
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void gemm_panel_scalar(const float* P, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y, int64_t ldy,
                       int64_t nr) {
  for (int64_t t = 0; t < nt; ++t) {
    float acc[kPanelRows] = {};
    const float* x = X + t * ldx;
    for (int64_t k = 0; k < in; ++k) {
      const float xk = x[k];
      const float* p = P + k * kPanelRows;
      for (int64_t r = 0; r < kPanelRows; ++r) acc[r] += xk * p[r];
    }
    for (int64_t r = 0; r < nr; ++r) Y[t * ldy + r] = acc[r];
  }
}

// The reference of the fused kernels: each weight decoded exactly as bf16_to_f32 / u4b8_row_to_f32 do
// (INT4: (q − 8) · scale), then summed in input order.
void gemv_bf16_scalar(const uint16_t* W, const float* X, int64_t ldx, int64_t nt, int64_t in, float* Y, int64_t ldy,
                      int64_t nr) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < nt; ++t) {
      float s = 0.f;
      for (int64_t k = 0; k < in; ++k) {
        uint16_t h;
        std::memcpy(&h, W + r * in + k, 2);
        s += bf16_to_f32(h) * X[t * ldx + k];
      }
      Y[t * ldy + r] = s;
    }
}

void gemv_u4b8_scalar(const uint8_t* packed, const float* scale, const float* X, int64_t ldx, int64_t nt, int64_t in,
                      float* Y, int64_t ldy, int64_t nr) {
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < nt; ++t) {
      float s = 0.f;
      for (int64_t j = 0; j < in / 8; ++j) {
        uint32_t w;
        std::memcpy(&w, packed + 4 * (r * (in / 8) + j), 4);
        const float sc = scale[r * (in / 128) + j / 16];
        for (int i = 0; i < 8; ++i) s += float(int((w >> (4 * i)) & 0xFu) - 8) * sc * X[t * ldx + 8 * j + i];
      }
      Y[t * ldy + r] = s;
    }
}

}  // namespace

const CpuKernels& cpu_kernels_scalar() {
  static constexpr CpuKernels k{"scalar",          bf16_to_f32_scalar, u4b8_row_to_f32_scalar, dot_scalar, axpy_scalar,
                                gemm_panel_scalar, gemv_bf16_scalar,   gemv_u4b8_scalar};
  return k;
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

const CpuKernels& cpu_kernels(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::scalar: return cpu_kernels_scalar();
    case CpuIsa::avx2:
      HLWQ_CHECK(cpu_has_avx2_fma(), "AVX2+FMA kernels requested but this CPU lacks avx2/fma");
      return cpu_kernels_avx2();
    case CpuIsa::auto_detect: break;
  }
  return cpu_has_avx2_fma() ? cpu_kernels_avx2() : cpu_kernels_scalar();
}

}  // namespace hlwq
