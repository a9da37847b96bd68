// Device sampling (see sampling.cuh). One block of 1024 threads per row.
// sample_top_k: radix select (4 passes of 8 bits over order-preserving keys) finds the k-th largest logit; the
// logits ≥ it (≤ 2048) are gathered, bitonic-sorted (logit descending, id ascending: the CPU sampler's order),
// weighted in double as the CPU does (exp((l − max)/T)), filtered by min-p and top-p, and the draw walks the
// normalized prefix sums.
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/sampling.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kMaxCand = 2048;

// Monotonic key: larger float → larger key; NaN → 0 (below −inf, whose key is 0x007FFFFF).
__device__ __forceinline__ uint32_t fkey(float f) {
  if (isnan(f)) return 0u;
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__global__ void __launch_bounds__(kThreads) argmax_kernel(const float* __restrict__ logits, int64_t V, int64_t ld,
                                                          int* ids, int* bad_rows) {
  HLWQ_PDL_PREAMBLE();
  __shared__ uint64_t best_s[32];
  __shared__ int bad_s;
  const float* l = logits + int64_t(blockIdx.x) * ld;
  if (threadIdx.x == 0) bad_s = 0;
  __syncthreads();
  // pack (key, ~index) so one max picks the largest value and, among equals, the lowest index
  uint64_t best = 0;
  bool bad = false;
  for (int64_t i = threadIdx.x; i < V; i += blockDim.x) {
    const float f = l[i];
    bad |= isnan(f) || f == INFINITY;
    const uint64_t c = (uint64_t(fkey(f)) << 32) | uint32_t(~uint32_t(i));
    best = c > best ? c : best;
  }
  if (bad) bad_s = 1;
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t ob = __shfl_xor_sync(0xffffffffu, best, o);
    best = ob > best ? ob : best;
  }
  if ((threadIdx.x & 31) == 0) best_s[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < int(blockDim.x >> 5); ++w) best = best_s[w] > best ? best_s[w] : best;
    best = best_s[0] > best ? best_s[0] : best;
    ids[blockIdx.x] = int(~uint32_t(best & 0xffffffffu));
    if (bad_rows) bad_rows[blockIdx.x] = bad_s;
  }
}

__global__ void __launch_bounds__(kThreads) topk_kernel(const float* __restrict__ logits, int64_t V, int64_t ld,
                                                        DeviceSamplerConfig one,
                                                        const DeviceSamplerConfig* __restrict__ per_row,
                                                        const double* __restrict__ u, int* ids) {
  HLWQ_PDL_PREAMBLE();
  const DeviceSamplerConfig cfg = per_row ? per_row[blockIdx.x] : one;
  if (!(cfg.temperature > 0.f)) return;  // a greedy row of a mixed batch: argmax chose it
  __shared__ int hist[256];
  __shared__ uint32_t prefix_s, want_s;
  __shared__ float cv[kMaxCand];
  __shared__ int ci[kMaxCand];
  __shared__ double cw[kMaxCand];
  __shared__ int n_s;
  const float* l = logits + int64_t(blockIdx.x) * ld;
  const int tid = threadIdx.x;
  const uint32_t k = uint32_t(int64_t(cfg.top_k) < V ? int64_t(cfg.top_k) : V);
  // 1. radix select of the k-th largest key
  uint32_t prefix = 0, mask = 0, want = k;  // want: rank (1-based, from the top) still to find among matches
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int i = tid; i < 256; i += blockDim.x) hist[i] = 0;
    __syncthreads();
    for (int64_t i = tid; i < V; i += blockDim.x) {
      const uint32_t key = fkey(l[i]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (tid == 0) {
      uint32_t acc = 0;
      int dgt = 255;
      for (; dgt > 0; --dgt) {
        if (acc + uint32_t(hist[dgt]) >= want) break;
        acc += uint32_t(hist[dgt]);
      }
      prefix_s = prefix | (uint32_t(dgt) << shift);
      want_s = want - acc;
    }
    __syncthreads();
    prefix = prefix_s;
    want = want_s;
    mask |= 255u << shift;
    __syncthreads();
  }
  const uint32_t kth = prefix;  // key of the k-th largest logit
  // 2. gather candidates (key ≥ kth)
  if (tid == 0) n_s = 0;
  __syncthreads();
  for (int64_t i = tid; i < V; i += blockDim.x) {
    const float f = l[i];
    if (fkey(f) >= kth) {
      const int at = atomicAdd(&n_s, 1);
      if (at < kMaxCand) cv[at] = f, ci[at] = int(i);
    }
  }
  __syncthreads();
  const int n = n_s;
  if (n > kMaxCand) {
    if (tid == 0) ids[blockIdx.x] = -1;
    return;
  }
  for (int i = n + tid; i < kMaxCand; i += blockDim.x) cv[i] = -INFINITY, ci[i] = 0x7fffffff;
  __syncthreads();
  // 3. bitonic sort, "before" = larger logit, then lower id
  for (int size = 2; size <= kMaxCand; size <<= 1)
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < kMaxCand; i += blockDim.x) {
        const int j = i ^ stride;
        if (j > i) {
          const bool up = (i & size) == 0;  // this run sorts "before"-first
          const bool j_before_i = cv[j] > cv[i] || (cv[j] == cv[i] && ci[j] < ci[i]);
          if (j_before_i == up) {
            const float tv = cv[i];
            cv[i] = cv[j], cv[j] = tv;
            const int ti = ci[i];
            ci[i] = ci[j], ci[j] = ti;
          }
        }
      }
      __syncthreads();
    }
  // 4. weights relative to the max, in double as the CPU sampler
  const double inv_t = 1.0 / double(cfg.temperature), mx = double(cv[0]);
  for (int i = tid; i < n; i += blockDim.x) cw[i] = exp((double(cv[i]) - mx) * inv_t);
  __syncthreads();
  if (tid == 0) {
    double total = 0.0;
    for (int i = 0; i < n; ++i) total += cw[i];
    // min-p drops candidates with weight < min_p (p_max weighs 1); they sit at the tail of the sorted order
    int m = n;
    if (cfg.min_p > 0.f)
      while (m > 1 && cw[m - 1] < double(cfg.min_p)) --m;
    int keep = m;
    if (cfg.top_p < 1.f) {
      const double need = double(cfg.top_p) * total;  // as the CPU: mass before min-p
      double cum = 0.0;
      keep = 0;
      while (keep < m && cum < need) cum += cw[keep++];
    }
    if (keep < 1) keep = 1;
    double kept = 0.0;
    for (int i = 0; i < keep; ++i) kept += cw[i];
    double cum = 0.0;
    int pick = ci[keep - 1];
    for (int i = 0; i < keep; ++i) {
      cum += double(float(cw[i] / kept));  // the CPU sums float probabilities in double
      if (u[blockIdx.x] < cum) {
        pick = ci[i];
        break;
      }
    }
    ids[blockIdx.x] = pick;
  }
}

}  // namespace

void argmax(const float* logits, int64_t rows, int64_t V, int64_t ld, int* ids, int* bad_rows, cudaStream_t st) {
  HLWQ_CHECK(V > 0 && V <= ld && V < (int64_t(1) << 31), "argmax: vocabulary {} in rows of {}", V, ld);
  if (rows == 0) return;
  argmax_kernel<<<unsigned(rows), kThreads, 0, st>>>(logits, V, ld, ids, bad_rows);
  HLWQ_CUDA_LAUNCH_CHECK("argmax {} rows x {}", rows, V);
}

void sample_top_k(const float* logits, int64_t rows, int64_t V, int64_t ld, const DeviceSamplerConfig& cfg,
                  const double* u, int* ids, cudaStream_t st) {
  HLWQ_CHECK(V > 0 && V <= ld && V < (int64_t(1) << 31), "sample_top_k: vocabulary {} in rows of {}", V, ld);
  HLWQ_CHECK(cfg.temperature > 0.f && cfg.top_k >= 1 && cfg.top_k <= 1024 && cfg.top_p > 0.f && cfg.top_p <= 1.f &&
                 cfg.min_p >= 0.f && cfg.min_p <= 1.f,
             "sample_top_k: temperature {} top_k {} top_p {} min_p {} (device sampling needs top_k in [1, 1024])",
             cfg.temperature, cfg.top_k, cfg.top_p, cfg.min_p);
  if (rows == 0) return;
  topk_kernel<<<unsigned(rows), kThreads, 0, st>>>(logits, V, ld, cfg, nullptr, u, ids);
  HLWQ_CUDA_LAUNCH_CHECK("sample_top_k {} rows x {}", rows, V);
}

void sample_rows(const float* logits, int64_t rows, int64_t V, int64_t ld, const DeviceSamplerConfig* cfgs,
                 const double* u, int* ids, cudaStream_t st) {
  HLWQ_CHECK(V > 0 && V <= ld && V < (int64_t(1) << 31), "sample_rows: vocabulary {} in rows of {}", V, ld);
  if (rows == 0) return;
  topk_kernel<<<unsigned(rows), kThreads, 0, st>>>(logits, V, ld, DeviceSamplerConfig{}, cfgs, u, ids);
  HLWQ_CUDA_LAUNCH_CHECK("sample_rows {} rows x {}", rows, V);
}

}  // namespace hlwq::cuda
