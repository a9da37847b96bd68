// The xfrag activation layout of the tensor-core GEMMs (gemm.cuh) as one device function, shared by the kernels
// that write it (pack_activations, the SwiGLU epilogue, hlwq_pack_*) and those that read single elements back
// (the calibration statistics, input_stats.cuh).
#pragma once
#include <cstdint>

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

}  // namespace hlwq::cuda
