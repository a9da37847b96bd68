// HLWQ matrices of a checkpoint as HlwqMatrixViews, validated: a native Linear `P` (io/hlwq_format.h) or one of
// the seed's hlwq-q5 weights (io/seed_q5.h). The views borrow the mmapped tensors and the codebook, which must
// outlive them (the seed's table is a static; a native table lives in the HlwqFormat the caller keeps).
#pragma once
#include <string>

#include "io/hlwq_format.h"
#include "io/safetensors.h"
#include "io/seed_q5.h"
#include "quant/hlwq_linear.h"

namespace hlwq {

// True when ck holds P.hlwq_codes.
bool hlwq_has_native(const Checkpoint& ck, const std::string& module);
// Checks P.hlwq_codes U8 [out, nb·16·bits] (bits: the width P resolves to, hlwq_resolve; another width is an
// error naming both), P.hlwq_norms F16 [out, nb], P.weight_shape I64 [2] = [out, in]
// (out, in as the caller expects, e.g. from config.json); errors say expected and actual, naming the tensor.
HlwqMatrixView hlwq_native_view(const Checkpoint& ck, const std::string& module, int64_t out, int64_t in,
                                const HlwqFormat& f);
// The view of a seed hlwq-q5 weight (5 bits, MSB-first, the seed's table).
HlwqMatrixView seed_q5_view(const SeedQ5Weight& w);

// Writes dst (atomically, replacing a previous output) = the HLWQ checkpoint src (native, or the seed's hlwq-q5)
// with every HLWQ matrix decoded to a dense F32 `…weight` (exact: decoded in fp32, stored in fp32; a fused 3-D
// Q5 tensor keeps its 3-D shape), everything else copied, config.json without a quantization_config and no
// polar_config.json. The engine's dense path on dst is the reference for its HLWQ path on src.
void write_hlwq_decoded(const std::string& src, const std::string& dst);

}  // namespace hlwq
