// Large-tile INT4 GEMM for prefill: Y [T, out] = X [T, in] · Wᵀ over the fragment-ordered weights and xfrag
// activations of gemm.cuh, with its numerics (INT4 widened exactly, each 128-column group's fp32 partial sum times
// its scale, fp32 accumulation in k-unit order), for batches of many tokens.
//
// Why a second kernel: gemm.cu's kernel is built for decode (a GEMV that reads each weight once) and serves prefill
// with 16-token tiles, so every weight is fetched and widened once per 16 tokens and each warp holds a 16 × 16
// output tile: the mixers' GEMMs of a 4096-token prefill ran at 127 TFLOP/s, a fifth of the mma.sync ceiling
// (bench/cuda/NOTES.md, sixteenth session); the experts' grouped launches of a long prefill read and widen each
// expert's weights once per 8-slot tile. Here a block of 8 warps owns 128 rows × a window of 64 or 128 slots; each
// stage of one k-unit (its weights, scales and activations) is copied into shared memory by cp.async, three stages
// in flight, and each warp computes 32 rows × 32 or 64 slots from it.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/gemm.cuh"

namespace hlwq::cuda {

// Slots from which gemm() and gemm_grouped() may take this kernel for INT4 matrices.
constexpr int64_t kTiledGemmMinTokens = 64;

// Whether gemm() takes this kernel: an INT4 matrix, ≥ kTiledGemmMinTokens tokens, and a grid of 64-slot blocks
// that covers at least half the SMs (there is no split over k: below that the fragment kernel, which splits k and
// spreads the rows over the SMs, is faster).
bool gemm_tiled_pays(const PackedLinear& w, int64_t T);
// The same for gemm_grouped() over a plan of plan_tiles 8-slot tiles (the whole plan's count, so that a launch over
// part of a plan runs the kernel the whole would), which must also average ≥ 3 tiles a matrix: with shorter runs a
// block stages a matrix's weights for a tile or two, and the fragment kernel was faster (H200, Qwen3.6's experts: at
// 256 tokens, 2 tiles an expert, 478 against 264 µs a layer; at 512, 3.1, 463 against 455; at 1,024, 5.4, 518
// against 744).
bool gemm_grouped_tiled_pays(const GroupedLinear& w, int64_t plan_tiles);

// y [t, 0..out) = x [t] · Wᵀ for t < T (T ≥ 1) on this kernel, for an INT4 matrix.
void gemm_tiled_int4(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st);

// gemm_grouped() on this kernel, for INT4 matrices and the swiglu and weighted epilogues (same arguments; launch_tiles
// only shapes the fragment kernel's launch). A block computes the items (up to 8 tiles of one matrix: slots are
// grouped by matrix, so each matrix's tiles are one run, cut from its first tile on) that start in its window of as
// many tiles.
void gemm_grouped_tiled_int4(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                             int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy,
                             const float* slot_w, cudaStream_t st, int64_t launch_tiles, const int* x_rows);

}  // namespace hlwq::cuda
