// RMSNorm variants and small activations used by the Qwen3.5 forward (SPEC §5), fp32.
// Dimension legend: n rows, d features per row.
#pragma once
#include <cmath>
#include <cstdint>

namespace hlwq {

inline float silu(float x) { return x / (1.f + std::exp(-x)); }
inline float sigmoid(float x) { return 1.f / (1.f + std::exp(-x)); }
// torch.nn.functional.softplus (beta 1, threshold 20)
inline float softplus(float x) { return x > 20.f ? x : std::log1p(std::exp(x)); }

// y [n, d] = x · rsqrt(mean(x²) + eps) · (1 + w): Qwen3.5's zero-centred RMSNorm. y may alias x.
void rmsnorm_zero_centred(const float* x, const float* w, int64_t n, int64_t d, float eps, float* y);

// x [n, d] ← rmsnorm(x) · w · silu(z): GDN output norm with a plain weight w [d], gate z [n, d].
void rmsnorm_gated(float* x, const float* z, const float* w, int64_t n, int64_t d, float eps);

}  // namespace hlwq
