// y = x Wᵀ for a Linear stored as HLWQ codes (native or the seed's Q5), without materializing W (SPEC §4):
// per row o and block b of 128 inputs, W[o, b] = (r[o,b]/128) · FWHT(c[code[o,b,·]]) with FWHT = √128·H the
// unscaled Walsh–Hadamard butterfly; FWHT is symmetric, so
//   y[o] = Σ_b (r[o,b]/128) · Σ_j c[code[o,b,j]] · x̃[b,j],   x̃[b] = FWHT(x[b·128 … b·128+127]) (tail zero-padded).
// The activations are rotated once per call (one 128-point FWHT per block and token); the weights are then a
// pure codebook lookup times a per-block scale, like an INT4 dequant with a non-uniform table. That is the
// decode path (few tokens: gemv). For many tokens (prefill) the rows are decoded back to the weight domain
// (decode_rows: lookup, one FWHT per block of the row) and multiplied like dense weights: the FWHT cost is then
// paid once per weight, not once per (row panel, token).
// A kernel set orders the rotated activations its own way inside each block (prepare), and its gemv reads that
// same order. Dimension legend: in = inputs, nb = ⌈in/128⌉ blocks, inp = nb·128 (padded inputs), nt = tokens,
// nr = rows.
#pragma once
#include <cstdint>

#include "quant/hlwq_pack.h"

namespace hlwq {

// A matrix of HLWQ codes read in place (e.g. from an mmapped checkpoint). Pointers are borrowed.
struct HlwqMatrixView {
  int64_t out = 0, in = 0;
  int bits = 4;
  HlwqBitOrder order = HlwqBitOrder::lsb_first;
  const uint8_t* codes = nullptr;   // [out, nb · 16 · bits] packed rows
  const uint16_t* norms = nullptr;  // [out, nb] fp16 bits
  const float* codebook = nullptr;  // [2^bits] ascending centroids (z domain)

  int64_t n_blocks() const { return (in + 127) / 128; }
  int64_t row_bytes() const { return n_blocks() * 16 * bits; }
  int64_t in_padded() const { return n_blocks() * 128; }
  // Rows [r0, r0 + n) as their own matrix (one expert of a fused tensor).
  HlwqMatrixView rows(int64_t r0, int64_t n) const;
};

// Throws unless the view is usable (shape, bits in 2..8, pointers set, codebook strictly ascending).
void hlwq_check_view(const HlwqMatrixView& v, const char* what);

// w[in] = row r of W in the weight domain (reference dequantization).
void hlwq_decode_row(const HlwqMatrixView& v, int64_t r, float* w);

struct HlwqKernels {
  const char* isa;  // "scalar" or "avx2"
  // xp[inp] = prepared activations of one token for codes of `bits` bits: FWHT per block of x[in] (tail
  // zero-padded), in the kernel's order for that width.
  void (*prepare)(const float* x, int64_t in, int bits, float* xp);
  // Y[t, r] = Σ W[r0 + r, k] · x[t, k] for r < nr, t < nt; xp [nt, inp] prepared (row stride ldxp),
  // Y row stride ldy. No allocation, never throws (runs inside OpenMP regions).
  void (*gemv)(const HlwqMatrixView& v, int64_t r0, int64_t nr, const float* xp, int64_t ldxp, int64_t nt,
               float* y, int64_t ldy);
  // dst [nr, in] = rows r0 … r0+nr−1 of W in the weight domain, bit-identical to hlwq_decode_row. No allocation,
  // never throws.
  void (*decode_rows)(const HlwqMatrixView& v, int64_t r0, int64_t nr, float* dst);
};

const HlwqKernels& hlwq_kernels_scalar();
const HlwqKernels& hlwq_kernels_avx2();  // callers check cpu support (hlwq_kernels() does)
// avx2 when the CPU has AVX2+FMA+F16C and prefer_simd, else scalar.
const HlwqKernels& hlwq_kernels(bool prefer_simd = true);

}  // namespace hlwq
