// RMSNorm kernels (see norm.h). Sums of squares accumulate in double: rows are short and this keeps the
// result independent of vector width, matching torch's fp32 mean closely.
#include "backend/cpu/norm.h"

namespace hlwq {

void rmsnorm_zero_centred(const float* x, const float* w, int64_t n, int64_t d, float eps, float* y) {
  for (int64_t i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(xi[j]) * xi[j];
    const float r = 1.f / std::sqrt(float(ss / double(d)) + eps);
    float* yi = y + i * d;
    for (int64_t j = 0; j < d; ++j) yi[j] = xi[j] * r * (1.f + w[j]);
  }
}

void rmsnorm_gated(float* x, const float* z, const float* w, int64_t n, int64_t d, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    float* xi = x + i * d;
    const float* zi = z + i * d;
    double ss = 0;
    for (int64_t j = 0; j < d; ++j) ss += double(xi[j]) * xi[j];
    const float r = 1.f / std::sqrt(float(ss / double(d)) + eps);
    for (int64_t j = 0; j < d; ++j) xi[j] = w[j] * (xi[j] * r) * silu(zi[j]);
  }
}

}  // namespace hlwq
