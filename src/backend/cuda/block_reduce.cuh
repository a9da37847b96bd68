// Warp and block sum/max reductions shared by the CUDA kernels (device code only; include from .cu files).
// block_* need every thread of the block to call them, blockDim.x a multiple of 32 (≤ 1024), and reuse one
// 32-float shared scratch, so each call ends with a barrier before the scratch can be written again.
#pragma once
#include <cuda_runtime.h>

namespace hlwq::cuda {

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block, returned to every thread. scratch: __shared__ float[32].
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nw ? scratch[lane] : 0.f;
  t = warp_sum(t);
  __syncthreads();
  return t;
}

}  // namespace hlwq::cuda
