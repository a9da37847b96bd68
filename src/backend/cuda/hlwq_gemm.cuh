// HLWQ on the GPU (quant/hlwq_linear.h, SPEC §4): y = x Wᵀ for W stored as B-bit Lloyd-Max codes with a norm per
// 128-column block, without materializing W. Per block b, W[o, b] = (r[o,b]/128) · FWHT(c[code[o,b,·]]), and FWHT
// is symmetric, so
//   y[o] = Σ_b (r[o,b]/128) · Σ_j c[code[o,b,j]] · x̃[b,j],   x̃[b] = FWHT(x[b·128 … b·128+127]) (tail zero-padded).
// The activations are rotated once per GEMM input (hlwq_pack_activations: one warp-shuffle FWHT per token and
// block, written as bf16 in gemm.cuh's xfrag order), and the rotated activations are shared by every row. The GEMM
// is then the tensor-core kernel of gemm.cu with a different dequantization: a lane's codes (weight_pack.h, HLWQ
// layout) are cut out of its words in registers, two at a time, and looked up in a shared-memory table built from
// the codebook at block start (B ≤ 5: a table of bf16 pairs indexed by two codes; B = 6..8: single codes, two
// lookups per register); each centroid is held as a bf16 hi + lo pair and multiplied by two MMAs, so the products
// see it to ~2⁻¹⁷; the block scale r/128 multiplies the fp32 partial sum of its 128 columns once.
// Widths 3, 4 and 5 get the 16-token tiles of prefill too; 2, 6, 7 and 8 run 8-token tiles only (same results).
// The one rounding besides fp32 accumulation: rotated activations → bf16 (2⁻⁹).
// gemm() and gemm_grouped() (gemm.cuh) dispatch here for PackedFormat::hlwq; callers only have to pack rotated
// activations (the SwiGLU output too: the gate_up kernel writes it in fp32, GroupedEpilogue::swiglu_f32).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/gemm.cuh"

namespace hlwq::cuda {

// As pack_activations (gemm.cuh), but each 128-column block of each row is replaced by its unscaled FWHT (columns
// in..in_pad read as zeros): xfrag [n_slots] = bf16(FWHT(x [row])) with row = slot_tok[slot] (or slot).
void hlwq_pack_activations(const float* x, int64_t ldx, int64_t n_rows, int64_t in, const int* slot_tok,
                           int64_t n_slots, int64_t in_pad, uint32_t* xfrag, cudaStream_t st);
// The SwiGLU output of the grouped experts, rows by slot: xfrag [slot] = bf16(FWHT(h [slot])) for the live 8-slot
// tiles (tile_mat [n_slots/8] ≥ 0; the others are left alone, as the grouped kernels skip them). h fp32 [n_slots, ldh].
void hlwq_pack_slots(const float* h, int64_t ldh, int64_t n_slots, int64_t in, const int* tile_mat, int64_t in_pad,
                     uint32_t* xfrag, cudaStream_t st);

// gemm() and gemm_grouped() for PackedFormat::hlwq (same contracts, xfrag holding rotated activations).
void hlwq_gemm(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st);
void hlwq_gemm_grouped(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                       int64_t max_tiles, float* y, int64_t ldy, const float* slot_w, cudaStream_t st,
                       int64_t launch_tiles = 0);

}  // namespace hlwq::cuda
