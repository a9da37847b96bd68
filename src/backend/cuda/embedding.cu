// Embedding gather (see embedding.cuh): one block row per token, bf16 widened to fp32 exactly.
#include <cuda_bf16.h>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/embedding.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

__global__ void embed_kernel(const int* __restrict__ ids, const __nv_bfloat16* __restrict__ table, int64_t H, float* h) {
  HLWQ_PDL_PREAMBLE();
  const int64_t t = blockIdx.y, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < H) h[t * H + i] = __bfloat162float(table[int64_t(ids[t]) * H + i]);
}

}  // namespace

void embed(const int* ids, const uint16_t* table, int64_t T, int64_t H, float* h, cudaStream_t st) {
  if (T == 0) return;
  const dim3 grid(unsigned((H + 255) / 256), unsigned(T));
  embed_kernel<<<grid, 256, 0, st>>>(ids, reinterpret_cast<const __nv_bfloat16*>(table), H, h);
  HLWQ_CUDA_LAUNCH_CHECK("embed {} tokens x {}", T, H);
}

}  // namespace hlwq::cuda
