// The router's per-token device code (moe_route.cu, moe_router_one.cu): the softmax + top-k of one token by one
// warp, and the whole slot plan of a one-token step by one warp.
#pragma once
#include <climits>
#include <cmath>

#include "backend/cuda/device_clock.cuh"
#include "backend/cuda/moe_route.cuh"

namespace hlwq::cuda {

// The most experts route_token ranks: 16 a lane (Qwen3-Next has 512).
inline constexpr int kRouteMaxExperts = 512;

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
__device__ void route_token(const float* logits, int64_t ld, int t, int E, int k, int S, const MoePlan& p,
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

// The plan of a one-token step (a decode step of one sequence), A = k + S ≤ 32, by the warp holding threadIdx.x <
// 32: lane j holds the token's j-th matrix, and the plan follows from comparisons among the A lanes, with no shared
// memory and no block barrier (the one-block kernel's three barriers over 32 warps and its loops over every matrix
// were most of its ~6 us a layer). The plan is the one-block kernel's: a matrix's tiles in matrix order; a matrix
// that several choices name (only a routing trace repeats an expert) gets its slots in choice order, where the
// one-block kernel's atomics take any order. logits: [E + 1] (column E the shared gate when S > 0), in global or
// shared memory.
template <int kMaxPerLane>
__device__ void route_one_plan(const float* logits, int E, int k, int S, const MoePlan& p, int max_tiles) {
  const int lane = threadIdx.x & 31, A = k + S;
  for (int i = lane; i < max_tiles * 8; i += 32) p.slot_tok[i] = -1, p.slot_w[i] = 0.f;
  for (int i = lane; i < max_tiles; i += 32) p.tile_mat[i] = -1;
  route_token<kMaxPerLane>(logits, E + 1, 0, E, k, S, p, nullptr);
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

}  // namespace hlwq::cuda
