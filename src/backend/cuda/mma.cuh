// Device helpers the tensor-core kernels share (gemm.cu, hlwq_gemm.cu, moe_fused.cu) and SiLU (also gdn.cu).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace hlwq::cuda {

// d += A · B for one m16n8k16 tile: A (16 × 16 bf16, row) in a0..a3, B (16 × 8 bf16, col) in b0, b1, fp32 d.
__device__ __forceinline__ void mma_bf16(float (&d)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// The nibbles at bits 0 and 16 of w as a bf16 pair of q = u − 8, exactly: u OR 0x4300 is the bf16 number 128 + u,
// minus 136 gives u − 8.
__device__ __forceinline__ uint32_t dq2(uint32_t w) {
  uint32_t v = (w & 0x000F000Fu) | 0x43004300u;
  __nv_bfloat162 h = *reinterpret_cast<__nv_bfloat162*>(&v);
  h = __hsub2(h, __float2bfloat162_rn(136.f));
  return *reinterpret_cast<uint32_t*>(&h);
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + expf(-x)); }

}  // namespace hlwq::cuda
