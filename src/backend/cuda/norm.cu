// RMSNorm kernels (see norm.cuh): one block per row (gated: per row and head), fp32 sums of squares reduced as a tree.
#include <cuda_bf16.h>

#include <cstdint>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {
namespace {

// Each thread keeps its kPer elements in registers (d ≤ kThreads·kPer), so h is read once and the residual sum
// is never re-read from memory. A row is one block, so at decode (a few rows) the block is wide: its threads' loads
// are all in flight at once (with the MoE slot residual, A·kPer of them a thread).
constexpr int kThreads = 1024;
constexpr int kPer = 4;
constexpr int kEarlySlots = 64;  // slots of a MoE residual row read before the PDL wait (the rest after)

// rmsnorm_gated_kernel: 128 threads, d ≤ 512, so each thread's weights and gates fit kGatedPer registers.
constexpr int kGatedThreads = 128;
constexpr int kGatedPer = 4;

// The bf16 columns sb [0, 32·(q1 − q0)) as the fragment units of 32-column chunks [q0, q1) of slot `row`: one 16-byte
// store per unit, where single bf16 stores would be 8 L2 transactions (xfrag.cuh).
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

// One block per row; with xf, blocks past the n rows write their zero units.
__global__ void __launch_bounds__(kThreads)
    rmsnorm_kernel(float* h, const float* __restrict__ res, const int* __restrict__ res_slots, int res_A,
                   const float* __restrict__ w, int64_t n, int64_t d, float eps, float* y, uint4* xf, int in_pad) {
  HLWQ_PDL_EARLY_READS("the norm weight, and the slot order of a MoE residual, which the routing wrote kernels "
                       "before the down GEMM this norm follows; h, the residual and every write after the wait");
  __shared__ float scratch[32];
  __shared__ __align__(16) __nv_bfloat16 sb[kThreads * kPer];  // y in bf16, for the fragment stores
  __shared__ int s_slots[kEarlySlots];
  const int64_t row = blockIdx.x;
  const int* slots = res_slots && row < n ? res_slots + row * res_A : nullptr;
  float wv[kPer];
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    wv[j] = row < n && i < d ? w[i] : 0.f;
  }
  if (slots)
    for (int a = threadIdx.x; a < min(res_A, kEarlySlots); a += blockDim.x) s_slots[a] = slots[a];
  HLWQ_PDL_PREAMBLE();
  if (row >= n) {
    zero_units(row, 0, in_pad / 32, in_pad, xf);
    return;
  }
  if (slots) __syncthreads();  // s_slots written (uniform: the rows < n of one launch all have slots or none)
  float* hr = h + row * d;
  float* yr = y + row * d;
  const float* rr = res && !res_slots ? res + row * d : nullptr;
  float res_v[kPer] = {};  // the residual of each element
  if (slots) {  // as moe_combine: each element a sum from 0 in slot order, then added to h
#pragma unroll 4
    for (int a = 0; a < res_A; ++a) {
      const float* ya = res + int64_t(a < kEarlySlots ? s_slots[a] : slots[a]) * d;
#pragma unroll
      for (int j = 0; j < kPer; ++j) {
        const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
        if (i < d) res_v[j] += ya[i];
      }
    }
  } else if (rr) {
#pragma unroll
    for (int j = 0; j < kPer; ++j) {
      const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
      if (i < d) res_v[j] = rr[i];
    }
  }
  float v[kPer];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    v[j] = i < d ? hr[i] + res_v[j] : 0.f;
    ss += v[j] * v[j];
  }
  if (res)
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
    if (i < d) {
      const float o = v[j] * r * (1.f + wv[j]);
      yr[i] = o;
      if (xf) sb[i] = __float2bfloat16_rn(o);
    }
  }
  if (xf) {
    __syncthreads();
    const int q = int(d / 32);
    store_units(sb, row, 0, q, in_pad, xf);
    zero_units(row, q, in_pad / 32, in_pad, xf);
  }
}

// One block per (row, head) of d features. With xf (d % 32 == 0, d ≤ 512): the head's columns as fragment units;
// blocks past the n rows write zero units, and the last head's blocks also the zero columns heads·d..in_pad.
__global__ void rmsnorm_gated_kernel(float* x, const float* __restrict__ z, int64_t ldz, const float* __restrict__ w,
                                     int64_t n, int64_t heads, int64_t d, float eps, uint4* xf, int in_pad) {
  HLWQ_PDL_EARLY_READS("the weight and the gate z, which the input projection wrote kernels before the "
                       "recurrence this norm follows; x and every write after the wait");
  __shared__ float scratch[32];
  __shared__ __align__(16) __nv_bfloat16 sb[512];
  const int64_t row = int64_t(blockIdx.x) / heads, head = int64_t(blockIdx.x) % heads;
  const int q0 = int(head * d / 32), q1 = int((head + 1) * d / 32);
  float wv[kGatedPer], gate[kGatedPer];  // w and silu(z) of this thread's features tid + j·blockDim
#pragma unroll
  for (int j = 0; j < kGatedPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    wv[j] = gate[j] = 0.f;
    if (row < n && i < d) {
      const float zv = z[row * ldz + head * d + i];
      wv[j] = w[i];
      gate[j] = zv / (1.f + expf(-zv));
    }
  }
  HLWQ_PDL_PREAMBLE();
  if (xf && head == heads - 1) zero_units(row, q1, in_pad / 32, in_pad, xf);
  if (row >= n) {
    zero_units(row, q0, q1, in_pad, xf);
    return;
  }
  float* xr = x + int64_t(blockIdx.x) * d;
  float xv[kGatedPer];
  float ss = 0.f;
#pragma unroll
  for (int j = 0; j < kGatedPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    xv[j] = i < d ? xr[i] : 0.f;
    ss += xv[j] * xv[j];
  }
  ss = block_sum(ss, scratch);
  const float r = rsqrtf(ss / float(d) + eps);
#pragma unroll
  for (int j = 0; j < kGatedPer; ++j) {
    const int64_t i = threadIdx.x + int64_t(j) * blockDim.x;
    if (i < d) {
      const float o = wv[j] * (xv[j] * r) * gate[j];
      xr[i] = o;
      if (xf) sb[i] = __float2bfloat16_rn(o);
    }
  }
  if (xf) {
    __syncthreads();
    store_units(sb, row, q0, q1, in_pad, xf);
  }
}

}  // namespace

void rmsnorm_zero_centred(float* h, const float* res, const float* w, int64_t n, int64_t d, float eps, float* y,
                          cudaStream_t st, const NormFusion& fuse) {
  HLWQ_CHECK(d <= int64_t(kThreads) * kPer, "rmsnorm: row of {} features (at most {})", d, kThreads * kPer);
  HLWQ_CHECK(!fuse.res_slots || (res && fuse.res_A >= 1), "rmsnorm: slot residual of {} slots a row without outputs",
             fuse.res_A);
  HLWQ_CHECK(!fuse.xfrag || (d % 32 == 0 && fuse.in_pad % 128 == 0 && d <= fuse.in_pad &&
                             reinterpret_cast<uintptr_t>(fuse.xfrag) % 16 == 0),
             "rmsnorm: fragments of {} features (a multiple of 32) in {} columns (a multiple of 128, 16-byte aligned)",
             d, fuse.in_pad);
  if (n == 0) return;
  const int64_t rows = fuse.xfrag ? (n + 15) / 16 * 16 : n;  // the 16-slot tiles of gemm() read whole tiles
  rmsnorm_kernel<<<unsigned(rows), kThreads, 0, st>>>(h, res, fuse.res_slots, int(fuse.res_A), w, n, d, eps, y,
                                                      reinterpret_cast<uint4*>(fuse.xfrag), int(fuse.in_pad));
  HLWQ_CUDA_LAUNCH_CHECK("rmsnorm [{}, {}]", n, d);
}

void rmsnorm_gated(float* x, const float* z, int64_t ldz, const float* w, int64_t n, int64_t heads, int64_t d, float eps,
                   cudaStream_t st, uint32_t* xfrag, int64_t in_pad) {
  HLWQ_CHECK(d <= kGatedThreads * kGatedPer, "rmsnorm_gated: heads of {} features (at most {})", d,
             kGatedThreads * kGatedPer);
  HLWQ_CHECK(!xfrag || (d % 32 == 0 && d <= 512 && in_pad % 128 == 0 && heads * d <= in_pad &&
                         reinterpret_cast<uintptr_t>(xfrag) % 16 == 0),
             "rmsnorm_gated: fragments of {} heads of {} (a multiple of 32, ≤ 512) in {} columns (16-byte aligned)", heads, d,
             in_pad);
  if (n * heads == 0) return;
  const int64_t rows = xfrag ? (n + 15) / 16 * 16 : n;  // the 16-slot tiles of gemm() read whole tiles
  rmsnorm_gated_kernel<<<unsigned(rows * heads), kGatedThreads, 0, st>>>(x, z, ldz, w, n, heads, d, eps,
                                                               reinterpret_cast<uint4*>(xfrag), int(in_pad));
  HLWQ_CUDA_LAUNCH_CHECK("rmsnorm_gated [{}, {}]", n, d);
}

}  // namespace hlwq::cuda
