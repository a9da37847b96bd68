// Fast Walsh–Hadamard transform on blocks of 128 floats (SPEC §4). H is the 128×128 Sylvester matrix in natural
// order (H₁ = [1], H₂ₙ = [[Hₙ, Hₙ], [Hₙ, −Hₙ]]), no random signs. The orthonormal form (× 1/√128) is symmetric
// and self-inverse (H·H = I) and preserves the L2 norm; the unscaled form is √128 · H, used where the caller folds
// the scale into another factor (HLWQ's z = √128 · H u, decode's r/128).
#pragma once
#include <cstdint>

namespace hlwq {

inline constexpr int kHadamardBlock = 128;

// x[128] ← H x (orthonormal), in place.
void fwht128(float* x);
// x[128] ← √128 · H x (butterflies only, no scaling), in place.
void fwht128_unscaled(float* x);
// x[n_blocks, 128] ← H x per block (orthonormal), in place.
void fwht128_batch(float* x, int64_t n_blocks);

}  // namespace hlwq
