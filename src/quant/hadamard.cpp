// Butterfly FWHT of length 128: strides 1, 2, 4, … 64, each (x, y) → (x + y, x − y). The stride is a template
// parameter so every stage is a fixed-trip loop the compiler fully unrolls/vectorizes (strides ≥ 4 map onto
// whole SIMD vectors; strides 1 and 2 become shuffles).
#include "quant/hadamard.h"

namespace hlwq {
namespace {

template <int H>
inline void fwht_stage(float* __restrict x) {
  for (int i = 0; i < kHadamardBlock; i += 2 * H) {
    for (int j = i; j < i + H; ++j) {
      const float a = x[j], b = x[j + H];
      x[j] = a + b;
      x[j + H] = a - b;
    }
  }
}

inline void fwht_stages(float* __restrict x) {
  fwht_stage<1>(x);
  fwht_stage<2>(x);
  fwht_stage<4>(x);
  fwht_stage<8>(x);
  fwht_stage<16>(x);
  fwht_stage<32>(x);
  fwht_stage<64>(x);
}

// 1/√128 = 2^-3.5, correctly rounded to float.
constexpr float kInvSqrt128 = 0.088388347648318440550f;

inline void fwht_orthonormal(float* __restrict x) {
  fwht_stages(x);
  for (int j = 0; j < kHadamardBlock; ++j) x[j] *= kInvSqrt128;
}

}  // namespace

void fwht128(float* x) { fwht_orthonormal(x); }

void fwht128_unscaled(float* x) { fwht_stages(x); }

void fwht128_batch(float* x, int64_t n_blocks) {
  for (int64_t b = 0; b < n_blocks; ++b) fwht_orthonormal(x + b * kHadamardBlock);
}

}  // namespace hlwq
