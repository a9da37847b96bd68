// Router + slot plan (see moe_route.cuh). One block of 1024 threads does it all at decode sizes: a single block
// needs no grid-wide barrier between counting, the tile scan and the slot fill. Its top-k is one warp per token, a
// serial chain of ~5 us a round of 32 tokens (102 us a layer at 512 tokens on the H200, a sixth of the MoE layer:
// bench/cuda/NOTES.md, thirteenth session), so past kOneBlockTokens the top-k runs first on a warp per token over
// T / 32 blocks and the one block only counts, scans and fills. Slots within a matrix are taken with atomics, so
// their order varies between runs; no result depends on it (each slot is a separate GEMM column, and a token's
// slots are summed in its own top-k order).
#include <climits>
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_clock.cuh"
#include "backend/cuda/moe_route.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/route_token.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int64_t kOneBlockTokens = 64;  // two tokens a warp of the one block

// The top-k alone, one warp per token (T > kOneBlockTokens): route_kernel then counts from the ids.
template <int kMaxPerLane>
__global__ void __launch_bounds__(kThreads) topk_kernel(const float* __restrict__ logits, int64_t ld, int T, int E,
                                                         int k, int S, MoePlan p) {
  HLWQ_PDL_PREAMBLE();
  const int t = int(blockIdx.x) * (kThreads / 32) + int(threadIdx.x >> 5);
  if (t < T) route_token<kMaxPerLane>(logits, ld, t, E, k, S, p, nullptr);
}

// One token in one warp (route_token.cuh).
template <int kMaxPerLane>
__global__ void __launch_bounds__(32) route_one_kernel(const float* __restrict__ logits, int E, int k, int S, MoePlan p,
                                                       int max_tiles) {
  HLWQ_PDL_PREAMBLE();
  route_one_plan<kMaxPerLane>(logits, E, k, S, p, max_tiles);
}

// The plan in one block: the top-k here unless `chosen` (topk_kernel ran), the tile scan, the slots.
template <int kMaxPerLane>
__global__ void __launch_bounds__(kThreads) route_kernel(const float* __restrict__ logits, int64_t ld, int T, int E,
                                                          int k, int S, MoePlan p, int max_tiles, bool chosen) {
  HLWQ_PDL_PREAMBLE();
  extern __shared__ int sm[];
  const int M = E + S, A = k + S;
  int* count = sm;              // [M]
  int* fill = sm + M;           // [M]
  int* tile_off = sm + 2 * M;   // [M + 1]
  int* warp_sum = sm + 3 * M + 1;  // [32]
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
  for (int i = tid; i < M; i += blockDim.x) count[i] = fill[i] = 0;
  for (int i = tid; i < max_tiles * 8; i += blockDim.x) p.slot_tok[i] = -1, p.slot_w[i] = 0.f;
  for (int i = tid; i < max_tiles; i += blockDim.x) p.tile_mat[i] = -1;
  __syncthreads();

  // 1. the top-k (here, or done by topk_kernel: then counted from its ids)
  if (chosen) {
    for (int a = tid; a < T * k; a += blockDim.x) atomicAdd(&count[p.topk_ids[a]], 1);
    for (int i = tid; i < S; i += blockDim.x) count[E + i] = T;
  } else {
    for (int t = warp; t < T; t += nw) route_token<kMaxPerLane>(logits, ld, t, E, k, S, p, count);
  }
  __syncthreads();

  // 2. tiles per matrix, exclusive scan: tile_off[m + 1] = Σ_{m' ≤ m} ⌈count / 8⌉ (M ≤ 544 threads: a shuffle scan
  // per warp, then one over the warps' totals; three barriers where a Hillis–Steele scan over shared memory took 20)
  int v = tid < M ? (count[tid] + 7) / 8 : 0;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) warp_sum[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < nw ? warp_sum[lane] : 0;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += u;
    }
    if (lane < nw) warp_sum[lane] = w;  // inclusive totals of warps 0..lane
  }
  __syncthreads();
  if (tid < M) tile_off[tid + 1] = v + (warp > 0 ? warp_sum[warp - 1] : 0);
  if (tid == 0) tile_off[0] = 0;
  __syncthreads();
  for (int m = tid; m < M; m += blockDim.x)
    for (int i = tile_off[m]; i < tile_off[m + 1]; ++i) p.tile_mat[i] = m;

  // 3. slots
  for (int a = tid; a < T * A; a += blockDim.x) {
    const int t = a / A, j = a % A;
    int m;
    float w;
    if (j < k) {
      m = p.topk_ids[t * k + j];
      w = p.topk_w[t * k + j];
    } else {
      m = E + (j - k);
      const float x = logits[int64_t(t) * ld + E];
      w = 1.f / (1.f + expf(-x));
    }
    const int slot = tile_off[m] * 8 + atomicAdd(&fill[m], 1);
    p.slot_tok[slot] = t;
    p.slot_w[slot] = w;
    p.tok_slot[a] = slot;
  }
  if (p.done_at) {  // the same for every thread (a kernel parameter)
    __syncthreads();
    if (tid == 0) *p.done_at = device_ns();
  }
}

__global__ void combine_kernel(const float* __restrict__ y, const int* __restrict__ tok_slot, int64_t A, int64_t H,
                               bool accumulate, float* out) {
  HLWQ_PDL_PREAMBLE();
  const int64_t t = blockIdx.y, i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= H) return;
  float s = 0.f;
  for (int64_t j = 0; j < A; ++j) s += y[int64_t(tok_slot[t * A + j]) * H + i];
  if (accumulate) out[t * H + i] += s;
  else out[t * H + i] = s;
}

}  // namespace

void moe_route(const float* logits, int64_t ld, int64_t T, int64_t E, int64_t k, int64_t S, const MoePlan& plan,
               int64_t max_tiles, cudaStream_t st) {
  HLWQ_CHECK(E > 0 && E <= kRouteMaxExperts && k > 0 && k <= E, "moe_route: {} experts top-{} (at most {} experts)",
             E, k, kRouteMaxExperts);
  HLWQ_CHECK(S >= 0 && S <= 32, "moe_route: {} shared-expert parts (at most 32)", S);
  HLWQ_CHECK(max_tiles >= moe_max_tiles(T, k, E, S), "moe_route: {} tiles for {} tokens", max_tiles, T);
  if (T == 0) return;
  const int M = int(E + S);
  const size_t smem = size_t(3 * M + 1 + 32) * sizeof(int);
  if (T == 1 && k + S <= 32) {
    if (E <= 256) route_one_kernel<8><<<1, 32, 0, st>>>(logits, int(E), int(k), int(S), plan, int(max_tiles));
    else route_one_kernel<16><<<1, 32, 0, st>>>(logits, int(E), int(k), int(S), plan, int(max_tiles));
    HLWQ_CUDA_LAUNCH_CHECK("moe_route: one token, {} experts top-{}", E, k);
    return;
  }
  const bool split = T > kOneBlockTokens;
  const unsigned blocks = unsigned((T + kThreads / 32 - 1) / (kThreads / 32));
  if (split) {
    if (E <= 256) topk_kernel<8><<<blocks, kThreads, 0, st>>>(logits, ld, int(T), int(E), int(k), int(S), plan);
    else topk_kernel<16><<<blocks, kThreads, 0, st>>>(logits, ld, int(T), int(E), int(k), int(S), plan);
    HLWQ_CUDA_LAUNCH_CHECK("moe_route: top-k of {} tokens, {} experts top-{}", T, E, k);
  }
  if (E <= 256)
    route_kernel<8><<<1, kThreads, smem, st>>>(logits, ld, int(T), int(E), int(k), int(S), plan, int(max_tiles), split);
  else
    route_kernel<16><<<1, kThreads, smem, st>>>(logits, ld, int(T), int(E), int(k), int(S), plan, int(max_tiles), split);
  HLWQ_CUDA_LAUNCH_CHECK("moe_route {} tokens, {} experts top-{}", T, E, k);
}

void moe_combine(const float* y, const int* tok_slot, int64_t T, int64_t A, int64_t H, bool accumulate, float* out,
                 cudaStream_t st) {
  if (T == 0) return;
  const dim3 grid(unsigned((H + 255) / 256), unsigned(T));
  combine_kernel<<<grid, 256, 0, st>>>(y, tok_slot, A, H, accumulate, out);
  HLWQ_CUDA_LAUNCH_CHECK("moe_combine {} tokens x {}", T, H);
}

}  // namespace hlwq::cuda
