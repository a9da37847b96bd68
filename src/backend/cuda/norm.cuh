// RMSNorms of the Qwen3.5 forward on the device (SPEC §5), fp32 in and out.
// Dimension legend: n rows, d features per row.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

// Optional parts of rmsnorm_zero_centred, each one kernel boundary fewer on the decode step's critical path.
struct NormFusion {
  // The residual is the MoE block's slot outputs res [slots, d] (moe_combine fused in): row t adds
  // Σ_{j<A} res[res_slots[t·A + j]], summed in j order as moe_combine does, so h and y are bit for bit the unfused ones.
  const int* res_slots = nullptr;
  int64_t res_A = 0;
  // y also written as the next GEMM's plain bf16 fragments of in_pad columns (d % 32 == 0), rows n..round16(n) and
  // columns d..in_pad zero: bit for bit pack_activations(y), whose launch the GEMM then skips.
  uint32_t* xfrag = nullptr;
  int64_t in_pad = 0;
};

// If res: h [n, d] += res first (the residual add, written back to h). Then y [n, d] = h · rsqrt(mean(h²) + eps) ·
// (1 + w) (zero-centred weight w [d]). d ≤ 4096. y may alias h. It reads w (and a MoE residual's slot order) before
// its PDL wait (pdl.cuh): those must come from a kernel before the one launched right before it.
void rmsnorm_zero_centred(float* h, const float* res, const float* w, int64_t n, int64_t d, float eps, float* y,
                          cudaStream_t st, const NormFusion& fuse = {});

// x [n, heads, d] ← w · rmsnorm(x) · silu(z) per (row, head): the GDN output norm with a plain weight w [d] and
// gate z at z + i·ldz + h·d; d ≤ 512. It reads w and z before its PDL wait (pdl.cuh): z must come from a kernel
// before the one launched right before it. xfrag (optional; d a multiple of 32): x [n, heads·d] also written as a
// GEMM's bf16 activations of in_pad columns, as pack_activations would.
void rmsnorm_gated(float* x, const float* z, int64_t ldz, const float* w, int64_t n, int64_t heads, int64_t d, float eps,
                   cudaStream_t st, uint32_t* xfrag = nullptr, int64_t in_pad = 0);

}  // namespace hlwq::cuda
