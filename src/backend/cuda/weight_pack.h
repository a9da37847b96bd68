// Host-side repacking of linear weights into the "fragment order" the CUDA GEMM kernels read (gemm.cuh).
// Done once at load; plain C++, no CUDA needed (so CPU tests can check it).
//
// Both formats tile W [out, in] into 16-row tiles; rows are padded with zeros to a multiple of 32 (the kernels
// take two row tiles per block) and columns to a multiple of 128 (one INT4 scale group = one kernel k-unit).
// Lane L of a warp holds, for one mma.m16n8k16 k-step, the A-fragment elements (g = L/4, c = L%4):
//   a0 = (row g,   k 2c, 2c+1)   a1 = (row g+8, k 2c, 2c+1)   a2 = (row g, k 2c+8, 2c+9)   a3 = (row g+8, k 2c+8, 2c+9)
// INT4 (from compressed-tensors u4b8_g128, SPEC §3): per (row tile, 64 columns) 32 lanes × uint4 = 512 bytes; word
//   j of a lane is k-step j (16 columns) and holds its 8 values as u = q + 8 nibbles; nibble s (s < 4) is the low
//   element of a_s and nibble s + 4 the high element, so `(w >> 4s) & 0x000F000F` is a_s as two 16-bit lanes
//   (the kernel turns them into bf16 exactly with the 0x4300 exponent trick). Layout [out/16][in/64][32][4] u32.
//   Scales: fp32 [out/16][in/128][8] pairs {scale[row g], scale[row g+8]} (exact for BF16/F16/F32 sources).
// BF16: per (row tile, 16 columns) 32 lanes × uint4 = the four a-registers; layout [out/16][in/16][32][4] u32.
// HLWQ (B-bit codes, B = 2..8; quant/hlwq_linear.h): the kernels multiply the codes with activations rotated per
//   128-column block (x̃ = FWHT(x), hlwq_gemm.cuh), so a k-unit of 128 columns is one HLWQ block and its weights
//   are the codebook values c[code] times the block's scale r/128. Per (row tile, k-unit) each lane holds the 64
//   codes of its A fragments for the unit's 8 k-steps as one bit string of 64·B bits in 2B u32 words (bit i of
//   the string = bit i%32 of word i/32): pair p = 4·st + s (k-step st, register a_s) sits at bits [2B·p, 2B·p+2B),
//   the low element of a_s (column 2c or 2c+8) in the low B bits, the high one (column +1) above it. So one
//   2B-bit field indexes a table of bf16 pairs (B ≤ 5) and a pair never needs more than two words.
//   Layout [out_pad/16][in_pad/128][32][2B] u32 (per lane 8·B contiguous bytes). Scales exactly as INT4, with the
//   value r/128 (r the fp16 block norm, exact in fp32); the codebook [2^B] (z domain) travels with the matrix.
//   Columns in..in_pad hold the codes of the block's zero-padded tail as the checkpoint stores them.
// Padding weights are 0 (INT4: u = 8, scale 0; HLWQ: code 0, scale 0), so padded rows compute 0 and padded columns
// add nothing.
#pragma once
#include <cstdint>
#include <vector>

#include "model/weights.h"

namespace hlwq::cuda {

enum class PackedFormat : uint8_t { int4, bf16, hlwq };

struct PackedLinearHost {
  PackedFormat format = PackedFormat::int4;
  int64_t out = 0, in = 0;          // logical shape of W
  int64_t out_pad = 0, in_pad = 0;  // out_pad % 32 == 0, in_pad % 128 == 0
  std::vector<uint32_t> q;          // fragment-ordered weights (see above)
  std::vector<float> scale;         // INT4 and HLWQ: [out_pad/16][in_pad/128][8][2]
  int bits = 0;                     // HLWQ: code width B
  std::vector<float> codebook;      // HLWQ: [2^B] ascending centroids (z domain)
  int64_t bytes() const { return int64_t(q.size() * 4 + scale.size() * 4); }
};

// The format a LinearWeight packs to: u4b8_g128 → int4, dense → bf16, HLWQ → hlwq.
PackedFormat packed_format_of(const LinearWeight& w);

// Row sources: rows [r0, r0 + n) of a LinearWeight (dense BF16/F16/F32, u4b8_g128 or HLWQ); w == nullptr means n
// zero rows (padding).
struct RowRange {
  const LinearWeight* w;
  int64_t r0, n;
};

// Packs the concatenation of the given row ranges (all with the same `in`) as one matrix. INT4 needs every
// source in u4b8_g128; BF16 needs dense sources (F16/F32 are rounded to bf16, as torch's .to(bfloat16)); HLWQ
// needs HLWQ sources of one width and one codebook.
PackedLinearHost pack_rows(PackedFormat f, const std::vector<RowRange>& rows, const char* what);

// One whole LinearWeight.
inline PackedLinearHost pack_linear(PackedFormat f, const LinearWeight& w) {
  return pack_rows(f, {{&w, 0, w.out}}, w.name.c_str());
}

// Rows [r0, r0 + n) of w as a view into w's own storage (dense, u4b8_g128 or HLWQ).
LinearWeight row_slice(const LinearWeight& w, int64_t r0, int64_t n);
// Columns [c0, c0 + n) of w, copied into `storage` (the result points into it: keep it alive while packing). For
// u4b8_g128 and HLWQ, c0 and n must be multiples of the 128-column group (HLWQ: or end at `in`); an HLWQ block
// cannot be split, its rotation mixes all 128 columns.
LinearWeight column_slice(const LinearWeight& w, int64_t c0, int64_t n, std::vector<uint8_t>& storage);

// gate and up of an expert ([I, H] each) interleaved per 16-row tile: tile 2p = gate rows [16p, 16p+16),
// tile 2p+1 = up rows [16p, 16p+16) (I padded to a multiple of 16), so one kernel block holds both halves of
// SiLU(gate)·up for the same features.
PackedLinearHost pack_gate_up(PackedFormat f, const LinearWeight& gate, const LinearWeight& up);

}  // namespace hlwq::cuda
