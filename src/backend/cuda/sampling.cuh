// Token choice on the device from fp32 logits [rows, ld] (row r's candidates are its first V ≤ ld entries: the
// padded ids past the tokenizer's vocabulary are never chosen), so only token ids cross to the host.
// argmax: greedy, the lowest index among equal maxima (as sampler_argmax); NaN logits rank below every number, and
//   bad_rows[r] is set to 1 when row r held a NaN or +inf (the host turns that into the CPU sampler's error).
// sample_top_k: the CPU pipeline's temperature → top-k (ties with the k-th logit kept) → min-p → top-p → draw with
//   the caller's uniform u ∈ [0, 1) per row (drawn on the host from the sequence's own RNG, so seeds reproduce the
//   CPU sampler's choices). Needs 1 ≤ top_k ≤ 1024; with more than 2048 logits tied at the k-th value the row
//   gets id −1 (the caller falls back to the host sampler). top_k = 0 (the whole vocabulary) is not done on the
//   device. Penalties are applied by the caller before.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

// argmax needs a device workspace of argmax_workspace_words(rows, V) uint64 words (one per row and span of 2048
// logits); rows ≤ 65535.
int64_t argmax_workspace_words(int64_t rows, int64_t V);
void argmax(const float* logits, int64_t rows, int64_t V, int64_t ld, int* ids, int* bad_rows, uint64_t* ws,
            int64_t ws_words, cudaStream_t st);

struct DeviceSamplerConfig {
  float temperature = 0.f;  // > 0 (0: greedy, only in sample_rows)
  int top_k = 0;            // 1..1024
  float top_p = 1.f;        // (0, 1]
  float min_p = 0.f;        // [0, 1]
};

void sample_top_k(const float* logits, int64_t rows, int64_t V, int64_t ld, const DeviceSamplerConfig& cfg,
                  const double* u, int* ids, cudaStream_t st);
// Each row with its own configuration cfgs[r] (device; the host checked each as sample_top_k does). Rows whose
// temperature is 0 are left alone: the engine runs argmax over every row first (it also flags non-finite rows).
void sample_rows(const float* logits, int64_t rows, int64_t V, int64_t ld, const DeviceSamplerConfig* cfgs,
                 const double* u, int* ids, cudaStream_t st);

}  // namespace hlwq::cuda
