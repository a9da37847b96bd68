// Ablation checkpoints: which of a quantized model's matrices carry its error (docs/calibration.md). From the bf16
// source and a quantized checkpoint made from it (compressed-tensors INT4 or native HLWQ), writes a dense
// checkpoint in which the quantized Linears whose module name matches a regular expression hold their exact decode
// (F32 `<module>.weight`, [out, in]) and every other quantized Linear holds its bf16 source weight (also F32, so
// the layout is the same either way); tensors quantize keeps (norms, embeddings, router, lm_head) are byte copies
// of the source. Fused expert tensors appear per expert, as in hlwq_dequantize's output, which the engine's dense
// path loads. Invariants (tests/quant/test_partial_decode.cpp): a selection of everything equals
// write_hlwq_decoded's output byte for byte for an HLWQ checkpoint; a selection of one kind leaves every other
// matrix exactly the source's. The output is written atomically.
#pragma once
#include <cstdint>
#include <string>

namespace hlwq {

struct PartialDecodeReport {
  int64_t decoded = 0;  // quantized Linears written as their decode
  int64_t source = 0;   // quantized Linears written as the source's weight
  int64_t copied = 0;   // other tensors, copied from the source
};

// select: an ECMAScript regular expression searched in each quantized Linear's module name (e.g.
// "model.layers.3.mlp.experts.7.down_proj"). Throws (naming the file, tensor or option) when src is not a bf16
// checkpoint, quantized is neither INT4 nor native HLWQ or lacks a matrix of src's plan or holds it in another
// shape, or select matches no quantized Linear (an ablation of nothing is a typo, not a result).
PartialDecodeReport write_partial_decode(const std::string& src, const std::string& quantized,
                                         const std::string& dst, const std::string& select);

}  // namespace hlwq
