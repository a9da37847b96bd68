// The xfrag activation layout of the tensor-core GEMMs (gemm.cuh) as device functions, shared by the kernels that
// write it (pack_activations, the SwiGLU epilogue, hlwq_pack_*, the norms and the GDN recurrence) and those that
// read single elements back (the calibration statistics, input_stats.cuh).
#pragma once
#include <cstdint>

#include <cuda_bf16.h>

namespace hlwq::cuda {

// bf16 element index of (slot n, column k) in an xfrag buffer of in_pad columns: 8-slot tile n/8, k-step k/16
// (two per uint4), lane (n%8)·4 + (k%8)/2, register (k/16)%2·2 + (k%16)/8, half k%2.
__device__ __forceinline__ int64_t xfrag_elem(int64_t n, int64_t k, int in_pad) {
  const int64_t tile = n >> 3, gg = n & 7, s = k >> 4, kk = k & 15;
  const int64_t word = ((tile * (in_pad / 32) + (s >> 1)) * 32 + gg * 4 + ((kk & 7) >> 1)) * 4 + (s & 1) * 2 + (kk >> 3);
  return word * 2 + (kk & 1);
}

// uint4 index of the unit (slot n, 32-column chunk q, lane column c) of an xfrag buffer: the four words a lane loads
// at once, the bf16 pairs of columns 32q + 2c + {0, 8, 16, 24} (each with the next column), in that order.
__device__ __forceinline__ int64_t xfrag_unit(int64_t n, int64_t q, int c, int in_pad) {
  return ((n >> 3) * (in_pad / 32) + q) * 32 + (n & 7) * 4 + c;
}

// The bf16 columns sb [0, 32·(q1 − q0)) as the fragment units of 32-column chunks [q0, q1) of slot `row`: one 16-byte
// store per unit, where single bf16 stores would be 8 L2 transactions.
__device__ __forceinline__ void store_units(const __nv_bfloat16* sb, int64_t row, int q0, int q1, int in_pad,
                                            uint4* xf) {
  const uint32_t* sp = reinterpret_cast<const uint32_t*>(sb);
  for (int u = threadIdx.x; u < (q1 - q0) * 4; u += blockDim.x) {
    const int q = q0 + u / 4, c = u % 4, k = (u / 4) * 32 + 2 * c;  // k: the unit's first column in sb
    xf[xfrag_unit(row, q, c, in_pad)] = make_uint4(sp[k / 2], sp[(k + 8) / 2], sp[(k + 16) / 2], sp[(k + 24) / 2]);
  }
}

__device__ __forceinline__ void zero_units(int64_t row, int q0, int q1, int in_pad, uint4* xf) {
  for (int u = threadIdx.x; u < (q1 - q0) * 4; u += blockDim.x)
    xf[xfrag_unit(row, q0 + u / 4, u % 4, in_pad)] = make_uint4(0, 0, 0, 0);
}

}  // namespace hlwq::cuda
