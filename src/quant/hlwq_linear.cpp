// Scalar HLWQ kernels (the reference: natural order, one code at a time), the view helpers and the dispatch.
#include "quant/hlwq_linear.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

#include "core/dtype.h"
#include "core/error.h"
#include "quant/hadamard.h"

namespace hlwq {

HlwqMatrixView HlwqMatrixView::rows(int64_t r0, int64_t n) const {
  HlwqMatrixView v = *this;
  v.out = n;
  v.codes = codes + r0 * row_bytes();
  v.norms = norms + r0 * n_blocks();
  return v;
}

void hlwq_check_view(const HlwqMatrixView& v, const char* what) {
  HLWQ_CHECK(v.out > 0 && v.in > 0, "{}: bad HLWQ shape [{}, {}]", what, v.out, v.in);
  HLWQ_CHECK(v.bits >= 2 && v.bits <= 8, "{}: HLWQ bits {} must be in [2, 8]", what, v.bits);
  HLWQ_CHECK(v.codes && v.norms && v.codebook, "{}: HLWQ view without codes, norms or codebook", what);
  for (int i = 1; i < (1 << v.bits); ++i)
    HLWQ_CHECK(v.codebook[i - 1] < v.codebook[i], "{}: HLWQ codebook not strictly ascending at {}", what, i);
}

namespace {

constexpr int kB = kHadamardBlock;

// codes of block b of row r → c[128] natural order
void unpack_block(const HlwqMatrixView& v, int64_t r, int64_t b, uint8_t* c) {
  hlwq_unpack_codes(v.codes + r * v.row_bytes() + b * 16 * v.bits, kB, v.bits, v.order, c);
}

float block_scale(const HlwqMatrixView& v, int64_t r, int64_t b) {
  return f16_to_f32(v.norms[r * v.n_blocks() + b]) * (1.0f / kB);
}

void prepare_scalar(const float* x, int64_t in, int /*bits*/, float* xp) {
  const int64_t nb = (in + kB - 1) / kB;
  std::copy(x, x + in, xp);
  std::fill(xp + in, xp + nb * kB, 0.0f);
  for (int64_t b = 0; b < nb; ++b) fwht128_unscaled(xp + b * kB);
}

void gemv_scalar(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, int64_t nt,
                 float* y, int64_t ldy) {
  uint8_t c[kB];
  for (int64_t r = 0; r < nr; ++r)
    for (int64_t t = 0; t < nt; ++t) {
      float acc = 0;
      for (int64_t b = 0; b < v.n_blocks(); ++b) {
        unpack_block(v, r0 + r, b, c);
        const float* xb = xp + t * ldxp + b * kB;
        float s = 0;
        for (int j = 0; j < kB; ++j) s += v.codebook[c[j]] * xb[j];
        acc += block_scale(v, r0 + r, b) * s;
      }
      y[t * ldy + r] = acc;
    }
}

void decode_rows_scalar(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst) {
  for (int64_t r = 0; r < nr; ++r) hlwq_decode_row(v, r0 + r, dst + r * v.in);
}

constexpr HlwqKernels kScalar = {"scalar", prepare_scalar, gemv_scalar, decode_rows_scalar};

}  // namespace

void hlwq_decode_row(const HlwqMatrixView& v, int64_t r, float* w) {
  uint8_t c[kB];
  alignas(64) float buf[kB];
  for (int64_t b = 0; b < v.n_blocks(); ++b) {
    unpack_block(v, r, b, c);
    for (int j = 0; j < kB; ++j) buf[j] = v.codebook[c[j]];
    fwht128_unscaled(buf);
    const float s = block_scale(v, r, b);
    const int64_t k0 = b * kB, len = std::min<int64_t>(kB, v.in - k0);
    for (int64_t j = 0; j < len; ++j) w[k0 + j] = s * buf[j];
  }
}

const HlwqKernels& hlwq_kernels_scalar() { return kScalar; }

namespace {
// F16C by CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) != 0;
}
}  // namespace

const HlwqKernels& hlwq_kernels(bool prefer_simd) {
  static const bool has_simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  return prefer_simd && has_simd ? hlwq_kernels_avx2() : kScalar;
}

}  // namespace hlwq
