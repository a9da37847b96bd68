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

namespace hlwq::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kMaxExperts = 512;  // 16 per lane (Qwen3-Next has 512)
constexpr int64_t kOneBlockTokens = 64;  // two tokens a warp of the one block

// Softmax + top-k of token t by one warp: its ids and renormalized weights into the plan, and its matrices counted
// into `count` where that is not null. Lane holds experts lane, lane + 32, ... The choice ranks e = exp(x − max),
// the probability before its division by the row's sum s (descending, then the lower index). Division by s is
// monotonic, so this is the order of p = e / s except where distinct e round to one p: e one ulp apart, or, when p
// is subnormal (below 1.2e-38: only a router whose k-th choice is that improbable), up to s ulps apart. There the
// CPU engine ranks the equal p by index, and this kernel by e (the exact order); the CPU's own sum differs from
// this one in its last bits, so such near-ties were never bit-matched. Only the k chosen are divided: dividing all
// E took the division's slow path for every subnormal quotient of a peaked softmax's tail, a long serial chain in
// the one warp that holds up the block (ncu, bench/cuda/NOTES.md eighth session). When s is NaN (a row of all −inf or
// NaN logits, or a +inf one) every p is NaN: then every key is −inf, the chosen are the lowest indices, and their
// weights NaN, as the CPU keeps them. Each lane sorts its candidates once, so a choice costs one warp argmax over the
// lanes' heads, and the winner shifts its list.
template <int kMaxPerLane>  // experts per lane: 8 (E ≤ 256) or 16 (E ≤ 512); fewer means a shorter per-lane sort
__device__ void route_token(const float* __restrict__ logits, int64_t ld, int t, int E, int k, int S, const MoePlan& p,
                            int* count) {
  const int lane = threadIdx.x & 31;
  const float* l = logits + int64_t(t) * ld;
  float key[kMaxPerLane];
  int idx[kMaxPerLane];
  float m = -INFINITY;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    const int e = lane + 32 * i;
    float x = e < E ? l[e] : -INFINITY;
    if (isnan(x)) x = -INFINITY;
    key[i] = x;
    idx[i] = e < E ? e : 0x7fffffff;
    m = fmaxf(m, x);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) {
    key[i] = idx[i] < E ? expf(key[i] - m) : 0.f;  // NaN when m is ±inf
    s += idx[i] < E ? key[i] : 0.f;
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  const bool nan_row = isnan(s);  // warp-uniform; otherwise every e is finite
#pragma unroll
  for (int i = 0; i < kMaxPerLane; ++i) key[i] = (idx[i] < E && !nan_row) ? key[i] : -INFINITY;
  // odd-even transposition sort of the lane's list: descending key, then ascending index (selects, no branches)
#pragma unroll
  for (int round = 0; round < kMaxPerLane; ++round)
#pragma unroll
    for (int i = round & 1; i + 1 < kMaxPerLane; i += 2) {
      const float k0 = key[i], k1 = key[i + 1];
      const int i0 = idx[i], i1 = idx[i + 1];
      const bool swap = k1 > k0 || (k1 == k0 && i1 < i0);
      key[i] = swap ? k1 : k0, key[i + 1] = swap ? k0 : k1;
      idx[i] = swap ? i1 : i0, idx[i + 1] = swap ? i0 : i1;
    }
  int my_id = 0;  // lane j keeps the j-th choice
  float my_e = 0.f;
  for (int j = 0; j < k; ++j) {
    // the warp's best head in two reductions (one instruction each, where a shuffle tree of (key, index) pairs
    // was ten dependent shuffles): the largest key as bits, then the lowest index holding it. Keys are e ≥ 0,
    // whose bits order as unsigned, or −inf, taken as 0. Such a tie of −inf with e = 0 is the only order this
    // changes, and it changes no choice: in a finite row the −inf are past-the-end entries (index 2³¹ − 1, so the
    // expert wins as before); in a NaN row every key is −inf and the lowest indices are chosen, as before.
    const unsigned kb = key[0] >= 0.f ? __float_as_uint(key[0]) : 0u;
    const unsigned best = __reduce_max_sync(0xffffffffu, kb);
    const int bi = int(__reduce_min_sync(0xffffffffu, kb == best ? unsigned(idx[0]) : 0xffffffffu));
    const float bk = __uint_as_float(best);
    if (idx[0] == bi) {  // this lane's head was chosen: shift its list
#pragma unroll
      for (int i = 0; i + 1 < kMaxPerLane; ++i) key[i] = key[i + 1], idx[i] = idx[i + 1];
      key[kMaxPerLane - 1] = -INFINITY;
      idx[kMaxPerLane - 1] = 0x7fffffff;
    }
    if (j < 32 && lane == j) my_id = bi, my_e = bk;
    if (j >= 32 && lane == 0)  // no model has k > 32
      p.topk_ids[t * k + j] = bi, p.topk_w[t * k + j] = nan_row ? NAN : bk / s;
  }
  const float my_p = nan_row ? NAN : my_e / s;
  __syncwarp();  // lane 0's writes of choices past 32 before the sum reads them
  // Σ of the chosen probabilities in choice order
  float sel = 0.f;
  for (int j = 0; j < k && j < 32; ++j) sel += __shfl_sync(0xffffffffu, my_p, j);
  for (int j = 32; j < k; ++j) sel += p.topk_w[t * k + j];
  __syncwarp();
  if (lane < k) {
    const int id = p.route_ids ? p.route_ids[t * k + lane] : my_id;  // a trace keeps the rank-order weights
    p.topk_ids[t * k + lane] = id;
    p.topk_w[t * k + lane] = my_p / sel;
    if (count) atomicAdd(&count[id], 1);
  }
  for (int j = 32 + lane; j < k; j += 32) {
    if (p.route_ids) p.topk_ids[t * k + j] = p.route_ids[t * k + j];
    p.topk_w[t * k + j] /= sel;
    if (count) atomicAdd(&count[p.topk_ids[t * k + j]], 1);
  }
  if (count && lane < S) atomicAdd(&count[E + lane], 1);
}

// The top-k alone, one warp per token (T > kOneBlockTokens): route_kernel then counts from the ids.
template <int kMaxPerLane>
__global__ void __launch_bounds__(kThreads) topk_kernel(const float* __restrict__ logits, int64_t ld, int T, int E,
                                                         int k, int S, MoePlan p) {
  HLWQ_PDL_PREAMBLE();
  const int t = int(blockIdx.x) * (kThreads / 32) + int(threadIdx.x >> 5);
  if (t < T) route_token<kMaxPerLane>(logits, ld, t, E, k, S, p, nullptr);
}

// One token (a decode step of one sequence), A = k + S ≤ 32, in one warp: lane j holds the token's j-th matrix, and
// the plan follows from comparisons among the A lanes, with no shared memory and no block barrier (the one-block
// kernel's three barriers over 32 warps and its loops over every matrix were most of its ~6 us a layer). The plan is
// the one-block kernel's: a matrix's tiles in matrix order; a matrix that several choices name (only a routing
// trace repeats an expert) gets its slots in choice order, where the one-block kernel's atomics take any order.
template <int kMaxPerLane>
__global__ void __launch_bounds__(32) route_one_kernel(const float* __restrict__ logits, int64_t ld, int E, int k,
                                                       int S, MoePlan p, int max_tiles) {
  HLWQ_PDL_PREAMBLE();
  const int lane = threadIdx.x, A = k + S;
  for (int i = lane; i < max_tiles * 8; i += 32) p.slot_tok[i] = -1, p.slot_w[i] = 0.f;
  for (int i = lane; i < max_tiles; i += 32) p.tile_mat[i] = -1;
  route_token<kMaxPerLane>(logits, ld, 0, E, k, S, p, nullptr);
  __syncwarp();  // the choices (written by lanes < k) and the clears, before they are read and overwritten
  const bool live = lane < A;
  const int m = lane < k ? p.topk_ids[lane] : live ? E + (lane - k) : INT_MAX;
  const float w = lane < k ? p.topk_w[lane] : live ? 1.f / (1.f + expf(-logits[E])) : 0.f;
  int cnt = 0, pos = 0;  // choices naming m; those before this lane
  for (int l = 0; l < A; ++l) {
    const int ml = __shfl_sync(0xffffffffu, m, l);
    cnt += ml == m;
    pos += ml == m && l < lane;
  }
  const int own = live && pos == 0 ? (cnt + 7) / 8 : 0;  // the tiles of m, counted by its first lane
  int tile = 0;  // Σ of the tiles of the matrices before m
  for (int l = 0; l < A; ++l) {
    const int ml = __shfl_sync(0xffffffffu, m, l), tl = __shfl_sync(0xffffffffu, own, l);
    tile += ml < m ? tl : 0;
  }
  if (live) {
    for (int i = 0; i < own; ++i) p.tile_mat[tile + i] = m;
    const int slot = tile * 8 + pos;
    p.slot_tok[slot] = 0;
    p.slot_w[slot] = w;
    p.tok_slot[lane] = slot;
  }
  __syncwarp();
  if (p.done_at && lane == 0) *p.done_at = device_ns();
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
  HLWQ_CHECK(E > 0 && E <= kMaxExperts && k > 0 && k <= E, "moe_route: {} experts top-{} (at most {} experts)", E, k,
             kMaxExperts);
  HLWQ_CHECK(S >= 0 && S <= 32, "moe_route: {} shared-expert parts (at most 32)", S);
  HLWQ_CHECK(max_tiles >= moe_max_tiles(T, k, E, S), "moe_route: {} tiles for {} tokens", max_tiles, T);
  if (T == 0) return;
  const int M = int(E + S);
  const size_t smem = size_t(3 * M + 1 + 32) * sizeof(int);
  if (T == 1 && k + S <= 32) {
    if (E <= 256) route_one_kernel<8><<<1, 32, 0, st>>>(logits, ld, int(E), int(k), int(S), plan, int(max_tiles));
    else route_one_kernel<16><<<1, 32, 0, st>>>(logits, ld, int(E), int(k), int(S), plan, int(max_tiles));
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
