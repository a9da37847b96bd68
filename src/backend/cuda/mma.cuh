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

// The nibbles at bits 4s and 16 + 4s of w (s = 0..3) as bf16 pairs of q = u − 8, exactly, in a[s]: u OR 0x4300 is
// the bf16 number 128 + u, and 128 + u − 136 = u − 8 is exact in one bf16 FMA. Written out in PTX so that a pair
// costs one shift (none for s = 0), one lop3 and one FMA: the compiler's form of the same expressions took ~4.3
// instructions a pair (SASS of the grouped gate_up at 49bd52a: 2.2 LOP3, 1 HADD2, 0.9 SHF), and the decode GEMMs
// are bound by their instruction issue as much as by DRAM (bench/cuda/NOTES.md).
__device__ __forceinline__ void dq8(uint32_t w, uint32_t (&a)[4]) {
  asm("{\n"
      "  .reg .b32 t1, t2, t3;\n"
      "  shr.b32 t1, %4, 4;\n"
      "  shr.b32 t2, %4, 8;\n"
      "  shr.b32 t3, %4, 12;\n"
      "  lop3.b32 %0, %4, 0x000F000F, 0x43004300, 0xEA;\n"  // (a & b) | c
      "  lop3.b32 %1, t1, 0x000F000F, 0x43004300, 0xEA;\n"
      "  lop3.b32 %2, t2, 0x000F000F, 0x43004300, 0xEA;\n"
      "  lop3.b32 %3, t3, 0x000F000F, 0x43004300, 0xEA;\n"
      "  fma.rn.bf16x2 %0, %0, %5, %6;\n"  // × 1 − 136
      "  fma.rn.bf16x2 %1, %1, %5, %6;\n"
      "  fma.rn.bf16x2 %2, %2, %5, %6;\n"
      "  fma.rn.bf16x2 %3, %3, %5, %6;\n"
      "}\n"
      : "=r"(a[0]), "=r"(a[1]), "=r"(a[2]), "=r"(a[3])
      : "r"(w), "r"(0x3F803F80u), "r"(0xC308C308u));  // bf16 pairs (1, 1) and (−136, −136)
}

__device__ __forceinline__ float silu_f(float x) { return x / (1.f + expf(-x)); }

}  // namespace hlwq::cuda
