// Tensor-core GEMM/GEMV over fragment-ordered weights (weight_pack.h): Y [slots, out] = X [slots, in] · Wᵀ with
// bf16 activations, fp32 accumulation, INT4 (dequantized exactly in registers, scale applied per 128-column
// group to the fp32 partial sums) or BF16 weights; HLWQ matrices are handed to hlwq_gemm.cuh (whose activations
// must be packed rotated). One kernel serves decode (1–16 tokens: a GEMV that reads each
// weight once) and prefill (many 8- or 16-token tiles; each tile re-reads the weights, mostly from L2).
// Grouped mode runs many matrices of one shape in one launch (MoE experts): each 8-token tile names its matrix.
//
// Activations go in "xfrag" order, written by pack_activations: for 8-slot tile n, k-step s (16 columns),
// lane L (g = L/4, c = L%4) holds b0 = x[8n+g][16s+2c, +1], b1 = x[8n+g][16s+2c+8, +9] (bf16 pairs);
// u32 layout [n_slots/8][in_pad/32][32 lanes][4] (two k-steps per uint4). n_slots % 8 == 0.
// Dimension legend: T tokens (or slots), in/out the matrix shape, *_pad the packed sizes (weight_pack.h).
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/weight_pack.h"

namespace hlwq::cuda {

// A packed matrix resident on the device.
struct PackedLinear {
  PackedFormat format = PackedFormat::int4;
  int64_t out = 0, in = 0, out_pad = 0, in_pad = 0;
  DeviceBuffer<uint32_t> q;
  DeviceBuffer<float> scale;  // INT4 and HLWQ
  int bits = 0;                  // HLWQ (hlwq_gemm.cuh): code width, its codebook [2^bits] on the host (for the
  std::vector<float> codebook;   // checks of make_grouped) and on the device
  DeviceBuffer<float> codebook_dev;
  int64_t bytes() const { return int64_t(q.bytes() + scale.bytes() + codebook_dev.bytes()); }
};
PackedLinear upload_packed(const PackedLinearHost& h, const char* what);

// u32 words of an xfrag buffer for n_slots (rounded up to 16: gemm reads whole 16-slot tiles) rows of in_pad columns.
inline int64_t xfrag_words(int64_t n_slots, int64_t in_pad) { return (n_slots + 15) / 16 * 16 * in_pad / 2; }
// Words of one 8-slot tile (xfrag_elem: tile t starts at t · xfrag_tile_words).
inline int64_t xfrag_tile_words(int64_t in_pad) { return 4 * in_pad; }

// xfrag [n_slots] = bf16(x [row, 0..in)) with row = slot_tok[slot] (slot_tok null: row = slot); rows that are
// -1 or ≥ n_rows, and columns in..in_pad, are zeros. x fp32 [n_rows, ldx].
void pack_activations(const float* x, int64_t ldx, int64_t n_rows, int64_t in, const int* slot_tok, int64_t n_slots,
                      int64_t in_pad, uint32_t* xfrag, cudaStream_t st);

// y [t, 0..out) = x [t] · Wᵀ for t < T, fp32, row stride ldy. xfrag holds ≥ T slots of w.in_pad columns.
// INT4 matrices of prefill batches run the large-tile kernel of gemm_tiled.cuh where gemm_tiled_pays.
void gemm(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st);
// The same on this file's kernel at every T (INT4 or BF16): for benchmarks and tests that compare the two.
void gemm_fragment(const PackedLinear& w, const uint32_t* xfrag, int64_t T, float* y, int64_t ldy, cudaStream_t st);

// Several matrices of one format and shape on the device (the experts of a layer, in gate_up or down form).
struct GroupedLinear {
  PackedFormat format = PackedFormat::int4;
  int64_t out = 0, in = 0, out_pad = 0, in_pad = 0, n = 0;
  DeviceBuffer<const uint32_t*> q;  // [n] device pointers into the matrices' storage
  DeviceBuffer<const float*> scale;  // [n] (INT4, HLWQ)
  int bits = 0;                      // HLWQ: the code width and codebook [2^bits] all n matrices share
  DeviceBuffer<float> codebook;
};
// The matrices must outlive the result and share format and shape (HLWQ: and codebook).
GroupedLinear make_grouped(const std::vector<const PackedLinear*>& mats, const char* what);
// The same from device-visible pointers to packed storage of shape [out, in] (padded to [out_pad, in_pad]); HLWQ
// also takes the width and the codebook.
GroupedLinear make_grouped_ptrs(PackedFormat f, int64_t out, int64_t in, int64_t out_pad, int64_t in_pad,
                                const std::vector<const uint32_t*>& q, const std::vector<const float*>& scale,
                                const char* what, int bits = 0, const std::vector<float>& codebook = {});

// Epilogues of the grouped kernel.
enum class GroupedEpilogue : uint8_t {
  swiglu,      // W is a gate_up matrix (pack_gate_up): h = silu(gate)·up written as bf16 into h_xfrag (in_pad of h =
               // h_in_pad, slots as the input's), ready as the input of the down matrices (INT4, bf16)
  swiglu_f32,  // as swiglu, but h [slot, 0..out/2) written in fp32 to y (row stride ldy): an HLWQ down projection
               // rotates h first (hlwq_pack_activations), and rounding it to bf16 before that would round it twice
  weighted,    // y [slot, 0..out) = slot_w[slot] · (x W_mᵀ) fp32, row stride ldy
};

// For every 8-slot tile i < max_tiles with tile_mat[i] = m ≥ 0: the slots 8i..8i+7 of xfrag through matrix m.
// Tiles with tile_mat -1 do nothing (the device-side routing decides how many tiles are live).
// launch_tiles (0: max_tiles) is the tile count the launch shape (its split of k) is chosen for: a launch over a
// part of a plan (pointers advanced by xfrag_tile_words / 8 slots per tile) passes the whole plan's count, so every
// output sums in the same order as in one launch over the whole plan.
// x_rows (INT4, BF16 gate_up): xfrag holds rows (the tokens) and slot s reads row x_rows[s] of it, −1 a zero row, instead of
// xfrag holding the slots' own rows (no gather of the activations by slot before the launch).
// INT4 matrices of a large plan run the large-tile kernel of gemm_tiled.cuh where gemm_grouped_tiled_pays.
void gemm_grouped(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                  int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy, const float* slot_w,
                  cudaStream_t st, int64_t launch_tiles = 0, const int* x_rows = nullptr);
// The same on this file's kernel at every size (INT4 or BF16): for benchmarks and tests that compare the two.
void gemm_grouped_fragment(const GroupedLinear& w, GroupedEpilogue epi, const uint32_t* xfrag, const int* tile_mat,
                           int64_t max_tiles, uint32_t* h_xfrag, int64_t h_in_pad, float* y, int64_t ldy,
                           const float* slot_w, cudaStream_t st, int64_t launch_tiles = 0, const int* x_rows = nullptr);

}  // namespace hlwq::cuda
