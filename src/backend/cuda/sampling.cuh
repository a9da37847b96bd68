// Token choice on the device from fp32 logits [rows, V], so only token ids cross to the host.
// argmax: greedy, the lowest index among equal maxima (as sampler_argmax); NaN logits rank below every number, and
//   nan_rows[r] is set to 1 when row r held any NaN (the host turns that into the CPU sampler's error).
// sample_top_k: the CPU pipeline's temperature → top-k (ties with the k-th logit kept) → min-p → top-p → draw with
//   the caller's uniform u ∈ [0, 1) per row (drawn on the host from the sequence's own RNG, so seeds reproduce the
//   CPU sampler's choices). Needs 1 ≤ top_k ≤ 1024; with more than 2048 logits tied at the k-th value the row
//   gets id −1 (the caller falls back to the host sampler). top_k = 0 (the whole vocabulary) is not done on the
//   device. Penalties are applied by the caller before.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

void argmax(const float* logits, int64_t rows, int64_t V, int* ids, int* nan_rows, cudaStream_t st);

struct DeviceSamplerConfig {
  float temperature;  // > 0
  int top_k;          // 1..1024
  float top_p;        // (0, 1]
  float min_p;        // [0, 1]
};

void sample_top_k(const float* logits, int64_t rows, int64_t V, const DeviceSamplerConfig& cfg, const double* u,
                  int* ids, cudaStream_t st);

}  // namespace hlwq::cuda
