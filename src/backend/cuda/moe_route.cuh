// MoE router on the device (SPEC §5): per token p = softmax(router logits) in fp32, top-k (ties to the lower
// expert index, NaN ranked last: a NaN logit counts as −inf, as the CPU forward does), weights renormalized to
// sum 1; then the slot plan that the grouped expert kernels (gemm.cuh) consume, built in the same launch (past 64
// tokens the top-k has a launch of its own before it).
// Matrices: 0..E-1 the routed experts, E..E+S-1 the S parts of the shared expert (every token, each part weighted
// sigmoid(shared-gate logit)): a shared expert S times as wide as a routed one runs as S expert-width slices of its
// intermediate features, whose down projections sum to the whole (SwiGLU is per feature). S = 0: no shared expert.
// Each matrix's assignments fill whole 8-slot tiles; slots are grouped by matrix. With MoePlan::route_ids (a
// benchmark's routing trace) the ids are replaced after the top-k, so the expert cache and the slot plan see the
// trace's experts while the weights and every kernel stay as they were.
// Dimension legend: T tokens, E experts, k active experts, S shared parts, M = E + S matrices, A = k + S slots per
// token.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

// Upper bound on the tiles of a plan: with n_m slots in each of the j ≤ min(M, T·A) matrices used,
// Σ_m ⌈n_m / 8⌉ ≤ Σ_m (n_m + 7) / 8 = (T·A + 7j) / 8, and the sum is an integer. Exact at one token (T·A tiles of one
// slot each); the decode launches size their grids by it, so a looser bound launches blocks that only exit.
inline int64_t moe_max_tiles(int64_t T, int64_t k, int64_t E, int64_t S) {
  const int64_t A = k + S, M = E + S, j = M < T * A ? M : T * A;
  return (T * A + 7 * j) / 8;
}

struct MoePlan {          // device pointers, sized for max_tiles = moe_max_tiles(T, ...)
  int* topk_ids;          // [T, k]
  float* topk_w;          // [T, k] renormalized
  int* slot_tok;          // [max_tiles·8] token of each slot, −1 = padding
  float* slot_w;          // [max_tiles·8] weight of each slot (0 for padding)
  int* tile_mat;          // [max_tiles] matrix of each tile, −1 = unused
  int* tok_slot;          // [T, A] slot of (token, j): j < k routed in top-k order, j = k + s shared part s
  // A replayed routing trace (Backend::set_route_trace): ids [T, k] that replace the router's choices before the
  // slot plan is built; the weights stay the router's, in rank order (largest first). null: the router's ids.
  const int* route_ids = nullptr;
  // Where to stamp the device clock (device_clock.cuh) when the plan is complete, or null: the moment the compute
  // stream reaches a prefetch's join, from which the expert cache counts the copy time it waits for.
  unsigned long long* done_at = nullptr;
};

// logits fp32 [T, ld]: columns [0, E) the router, column E the shared gate (when S > 0). E ≤ 512, k ≤ E, S ≤ 32.
void moe_route(const float* logits, int64_t ld, int64_t T, int64_t E, int64_t k, int64_t S, const MoePlan& plan,
               int64_t max_tiles, cudaStream_t st);

// out [T, H] (+)= Σ_j y [tok_slot[t, j], 0..H) over the A slots of each token (accumulate: add to out, which is
// then the residual stream). y fp32 [slots, H].
void moe_combine(const float* y, const int* tok_slot, int64_t T, int64_t A, int64_t H, bool accumulate, float* out,
                 cudaStream_t st);

}  // namespace hlwq::cuda
