// Device sampling (see sampling.cuh). argmax: two passes (below); sample_top_k: one block of 1024 threads per row.
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

// Greedy choice in two passes, so a row of ~250 k logits is read by ~120 blocks at once instead of one SM:
// argmax_part_kernel: block (b, r) reduces logits [r, b·kArgmaxSpan, +kArgmaxSpan) to one packed candidate
//   (key << 32) | (0x7FFFFFFF − index): the larger word is the larger logit and, among equal keys, the lower index
//   (index < 2^31, so bit 31 is free); bit 31 flags a NaN or +inf in the span.
// argmax_final_kernel: block r takes the largest of row r's candidates (bit 31 masked) and ORs the flags.
constexpr int kArgmaxThreads = 256;
constexpr int kArgmaxPerThread = 8;
constexpr int64_t kArgmaxSpan = int64_t(kArgmaxThreads) * kArgmaxPerThread;
constexpr uint64_t kBadBit = uint64_t(1) << 31;

__global__ void __launch_bounds__(kArgmaxThreads) argmax_part_kernel(const float* __restrict__ logits, int64_t V,
                                                                     int64_t ld, uint64_t* part) {
  HLWQ_PDL_PREAMBLE();
  __shared__ uint64_t best_s[kArgmaxThreads / 32];
  const float* l = logits + int64_t(blockIdx.y) * ld;
  const int64_t i0 = int64_t(blockIdx.x) * kArgmaxSpan + threadIdx.x;
  float f[kArgmaxPerThread];
#pragma unroll
  for (int j = 0; j < kArgmaxPerThread; ++j) {  // all loads first: one memory round trip per block
    const int64_t i = i0 + int64_t(j) * kArgmaxThreads;
    f[j] = i < V ? l[i] : NAN;
  }
  uint64_t best = 0;
  bool bad = false;
#pragma unroll
  for (int j = 0; j < kArgmaxPerThread; ++j) {
    const int64_t i = i0 + int64_t(j) * kArgmaxThreads;
    bad |= i < V && (isnan(f[j]) || f[j] == INFINITY);
    // past V the candidate is 0, the starting value: never chosen
    const uint64_t c = (uint64_t(fkey(f[j])) << 32) | uint64_t(0x7FFFFFFFu - uint32_t(i < V ? i : 0x7FFFFFFF));
    best = c > best ? c : best;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t ob = __shfl_xor_sync(0xffffffffu, best, o);
    best = ob > best ? ob : best;
  }
  bad = __syncthreads_or(bad);
  if ((threadIdx.x & 31) == 0) best_s[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) best = best_s[w] > best ? best_s[w] : best;
    part[int64_t(blockIdx.y) * gridDim.x + blockIdx.x] = best | (bad ? kBadBit : 0);
  }
}

__global__ void __launch_bounds__(kArgmaxThreads) argmax_final_kernel(const uint64_t* __restrict__ part, int nb,
                                                                      int* ids, int* bad_rows) {
  HLWQ_PDL_PREAMBLE();
  __shared__ uint64_t best_s[kArgmaxThreads / 32];
  const uint64_t* p = part + int64_t(blockIdx.x) * nb;
  uint64_t best = 0;
  bool bad = false;
  for (int b = threadIdx.x; b < nb; b += kArgmaxThreads) {
    const uint64_t c = p[b];
    bad |= (c & kBadBit) != 0;
    best = (c & ~kBadBit) > best ? (c & ~kBadBit) : best;
  }
  for (int o = 16; o > 0; o >>= 1) {
    const uint64_t ob = __shfl_xor_sync(0xffffffffu, best, o);
    best = ob > best ? ob : best;
  }
  bad = __syncthreads_or(bad);
  if ((threadIdx.x & 31) == 0) best_s[threadIdx.x >> 5] = best;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kArgmaxThreads / 32; ++w) best = best_s[w] > best ? best_s[w] : best;
    ids[blockIdx.x] = int(0x7FFFFFFFu - uint32_t(best & 0x7FFFFFFFu));
    if (bad_rows) bad_rows[blockIdx.x] = bad ? 1 : 0;
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

int64_t argmax_workspace_words(int64_t rows, int64_t V) { return rows * ((V + kArgmaxSpan - 1) / kArgmaxSpan); }

void argmax(const float* logits, int64_t rows, int64_t V, int64_t ld, int* ids, int* bad_rows, uint64_t* ws,
            int64_t ws_words, cudaStream_t st) {
  HLWQ_CHECK(V > 0 && V <= ld && V < (int64_t(1) << 31), "argmax: vocabulary {} in rows of {}", V, ld);
  if (rows == 0) return;
  HLWQ_CHECK(rows <= 65535 && ws && ws_words >= argmax_workspace_words(rows, V),
             "argmax: {} rows of {} need a workspace of {} words, got {}", rows, V, argmax_workspace_words(rows, V),
             ws ? ws_words : 0);
  const int64_t nb = (V + kArgmaxSpan - 1) / kArgmaxSpan;
  argmax_part_kernel<<<dim3(unsigned(nb), unsigned(rows)), kArgmaxThreads, 0, st>>>(logits, V, ld, ws);
  HLWQ_CUDA_LAUNCH_CHECK("argmax {} rows x {} ({} spans)", rows, V, nb);
  argmax_final_kernel<<<unsigned(rows), kArgmaxThreads, 0, st>>>(ws, int(nb), ids, bad_rows);
  HLWQ_CUDA_LAUNCH_CHECK("argmax merge of {} rows", rows);
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
