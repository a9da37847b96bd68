// RMSNorms of the Qwen3.5 forward on the device (SPEC §5), fp32 in and out.
// Dimension legend: n rows, d features per row.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

// If res: h [n, d] += res first (the residual add, written back to h). Then y [n, d] = h · rsqrt(mean(h²) + eps) ·
// (1 + w) (zero-centred weight w [d]). d ≤ 4096. y may alias h.
void rmsnorm_zero_centred(float* h, const float* res, const float* w, int64_t n, int64_t d, float eps, float* y,
                          cudaStream_t st);

// x [n, heads, d] ← w · rmsnorm(x) · silu(z) per (row, head): the GDN output norm with a plain weight w [d] and
// gate z at z + i·ldz + h·d. xfrag (optional; d a multiple of 32, ≤ 512): x [n, heads·d] also written as a GEMM's
// bf16 activations of in_pad columns, as pack_activations would.
void rmsnorm_gated(float* x, const float* z, int64_t ldz, const float* w, int64_t n, int64_t heads, int64_t d, float eps,
                   cudaStream_t st, uint32_t* xfrag = nullptr, int64_t in_pad = 0);

}  // namespace hlwq::cuda
