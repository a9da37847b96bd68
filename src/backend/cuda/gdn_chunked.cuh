// The Gated DeltaNet delta rule in its chunked WY/UT form, for prefill (SPEC §5 step 5; the derivation is in
// src/backend/cpu/gdn.cpp's opening comment, and this computes the same formulas). Chunks of kGdnChunkDev tokens:
//   prep (parallel over value head × chunk × sequence): normalized q and k, β, G = cumulative log-decay, the masked
//     decayed scores QK[i][j] = e^{G_i−G_j} (q_i·k_j) for j ≤ i, and forward substitution on [β v | β e^G k] with
//     A[i][j] = β_i e^{G_i−G_j} (k_i·k_j), giving U | W (u = U − W S0) — written to the workspace;
//   scan (parallel over value head × 16 columns of S × sequence, sequential over the chunks): u = U − W S,
//     o = e^G (Q S) + QK u, S ← e^{G_L} S + Σ_j e^{G_L−G_j} k_j u_jᵀ.
// Every exponent is G_i − G_j with j ≤ i, or G_i itself: ≤ 0, nothing overflows. The token recurrence
// (gdn_delta_rule's short-sequence path) does the same arithmetic in another order; tests/cuda/test_cuda_mixers.cpp
// holds both to the CPU.
// Dimension legend: T batch tokens, Hv value heads, dk/dv head dims, L = kGdnChunkDev, R = dv + dk.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/gdn.cuh"

namespace hlwq::cuda {

// Chunk length: 32 keeps prep's shared memory (≈ 70 KB at dk = dv = 128) inside the 99 KB a block may take on
// Ampere and Ada consumer cards.
inline constexpr int kGdnChunkDev = 32;

// Workspace floats for batches of T tokens: per (token, value head) U | W [R], QK [L] and G [1].
int64_t gdn_chunked_workspace_floats(int64_t T, const GdnDimsDev& d);
// Whether this device can run the chunked form for these head sizes (shared memory); else the recurrence does.
bool gdn_chunked_fits(const GdnDimsDev& d, int device);

// out [T, Hv·dv] (before the gated norm) and S for the sequences of at least min_n tokens (others untouched); the
// arguments as gdn_delta_rule's. max_n: the longest such sequence's tokens (sizes the grid). ws: the workspace.
void gdn_chunked(const float* act, const float* ba, int64_t ldba, const float* A_log, const float* dt_bias,
                 const GdnSeq* seqs, int n_seq, int min_n, int max_n, float* S, const GdnDimsDev& d, float* ws,
                 int64_t T, float* out, cudaStream_t st);

}  // namespace hlwq::cuda
