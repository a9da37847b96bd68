// Quantizing one weight matrix to packed HLWQ codes, as the checkpoint stores them: codes bit-packed row by row
// (hlwq_pack.h) and fp16 block scales, with the relative error of the decoded matrix against the input.
// The same routine writes hlwq's native rows (lsb_first, any width 2..8, converged table, l2 or least-squares
// scale) and the seed's hlwq-q5 stream (msb_first, 5 bits, its unconverged table, l2 norm): the seed's flat
// stream of a [out, n_blocks, 128] tensor is exactly the concatenation of these rows.
#pragma once
#include <cstdint>
#include <vector>

#include "quant/hlwq_codec.h"
#include "quant/hlwq_pack.h"
#include "quant/int4_quant.h"

namespace hlwq {

struct HlwqPacked {
  int64_t out = 0, in = 0, n_blocks = 0;
  int bits = 0;
  std::vector<uint8_t> codes;   // [out, n_blocks · 16 · bits]
  std::vector<uint16_t> norms;  // [out, n_blocks] fp16 bits
  WeightError error;            // decoded vs w
};

// w [out, in] → packed codes. Rows run in parallel (OpenMP); results and error sums do not depend on the thread
// count. Throws on a non-finite weight (naming the row) and when the codebook does not have 2^bits levels.
HlwqPacked hlwq_quantize_matrix(const float* w, int64_t out, int64_t in, const HlwqCodebook& cb, int bits,
                                HlwqBitOrder order, HlwqScale mode);
// The inverse: p's codes decoded to w [out, in] (exact, as the engine decodes them).
void hlwq_dequantize_packed(const HlwqPacked& p, const HlwqCodebook& cb, HlwqBitOrder order, float* w);

}  // namespace hlwq
