// Butterfly FWHT of length 128: strides 1, 2, 4, … 64, each (x, y) → (x + y, x − y). The stride is a template
// parameter so every stage is a fixed-trip loop the compiler fully unrolls/vectorizes (strides ≥ 4 map onto
// whole SIMD vectors; strides 1 and 2 run inside 4-float vectors, see below).
#include "quant/hadamard.h"

#include <cstring>

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

// Strides 1 and 2 inside each 4-float vector: shuffles, and a multiply by ±1 (exact, so a + (−1)·b == a − b and
// the result is bit-identical to the two butterfly stages). About 3× faster than the scalar stages, which the
// auto-vectorizer handles poorly.
#if defined(__has_builtin) && __has_builtin(__builtin_shufflevector)
typedef float f32x4 __attribute__((vector_size(16)));
inline void fwht_stages_1_2(float* __restrict x) {
  const f32x4 sign1 = {1.f, -1.f, 1.f, -1.f}, sign2 = {1.f, 1.f, -1.f, -1.f};
  for (int i = 0; i < kHadamardBlock; i += 4) {
    f32x4 v;
    std::memcpy(&v, x + i, sizeof v);
    v = __builtin_shufflevector(v, v, 0, 0, 2, 2) + __builtin_shufflevector(v, v, 1, 1, 3, 3) * sign1;
    v = __builtin_shufflevector(v, v, 0, 1, 0, 1) + __builtin_shufflevector(v, v, 2, 3, 2, 3) * sign2;
    std::memcpy(x + i, &v, sizeof v);
  }
}
#else
inline void fwht_stages_1_2(float* __restrict x) {
  fwht_stage<1>(x);
  fwht_stage<2>(x);
}
#endif

inline void fwht_stages(float* __restrict x) {
  fwht_stages_1_2(x);
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
