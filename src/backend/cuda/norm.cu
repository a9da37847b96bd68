// RMSNorm kernels (see norm.cuh): one block per row, fp32 sums of squares reduced as a tree.
#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 256;

// Each thread keeps its kPer elements in registers (d ≤ kThreads·kPer), so h is read once and the residual sum
// is never re-read from memory.
constexpr int kPer = 16;

__global__ void rmsnorm_kernel(float* h, const float* __restrict__ res, const float* __restrict__ w, int64_t d,
                               float eps, float* y) {
  HLWQ_PDL_PREAMBLE();
  __shared__ float scratch[32];
  float* hr = h + int64_t(blockIdx.x) * d;
  float* yr = y + int64_t(blockIdx.x) * d;
  const float* rr = res ? res + int64_t(blockIdx.x) * d : nullptr;
  float v[kPer];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    v[j] = i < d ? hr[i] + (rr ? rr[i] : 0.f) : 0.f;
    ss += v[j] * v[j];
  }
  if (rr)
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
      if (i < d) hr[i] = v[j];
    }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(d) + eps);
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    if (i < d) yr[i] = v[j] * r * (1.f + w[i]);
  }
}

__global__ void rmsnorm_gated_kernel(float* x, const float* __restrict__ z, int64_t ldz, const float* __restrict__ w,
                                     int64_t heads, int64_t d, float eps) {
  HLWQ_PDL_PREAMBLE();
  __shared__ float scratch[32];
  float* xr = x + int64_t(blockIdx.x) * d;
  const float* zr = z + (int64_t(blockIdx.x) / heads) * ldz + (int64_t(blockIdx.x) % heads) * d;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(d) + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const float zv = zr[i];
    xr[i] = w[i] * (xr[i] * r) * (zv / (1.f + expf(-zv)));
  }
}

}  // namespace

void rmsnorm_zero_centred(float* h, const float* res, const float* w, int64_t n, int64_t d, float eps, float* y,
                          cudaStream_t st) {
  HLWQ_CHECK(d <= int64_t(kThreads) * kPer, "rmsnorm: row of {} features (at most {})", d, kThreads * kPer);
  if (n == 0) return;
  rmsnorm_kernel<<<unsigned(n), kThreads, 0, st>>>(h, res, w, d, eps, y);
  HLWQ_CUDA_LAUNCH_CHECK("rmsnorm [{}, {}]", n, d);
}

void rmsnorm_gated(float* x, const float* z, int64_t ldz, const float* w, int64_t n, int64_t heads, int64_t d, float eps,
                   cudaStream_t st) {
  if (n * heads == 0) return;
  rmsnorm_gated_kernel<<<unsigned(n * heads), 128, 0, st>>>(x, z, ldz, w, heads, d, eps);
  HLWQ_CUDA_LAUNCH_CHECK("rmsnorm_gated [{}, {}]", n, d);
}

}  // namespace hlwq::cuda
