// Writing HLWQ checkpoints from a quantization plan (ct_plan.h: the same tensors are quantized as for the
// compressed-tensors export, and the same ones kept): hlwq's native format (io/hlwq_format.h) and the seed's
// hlwq-q5 layout (io/seed_q5.h), which the seed's tools and `hlwq quantize --format ct-int4` read back.
#pragma once
#include <string>
#include <vector>

#include "io/checkpoint_writer.h"
#include "io/hlwq_format.h"
#include "quant/ct_plan.h"
#include "quant/hlwq_quant.h"

namespace hlwq {

// Output tensors: per quantized item P.hlwq_codes U8 [out, nb·16·bits] (bits: the width P resolves to in f), P.hlwq_norms F16 [out, nb],
// P.weight_shape I64 [2]; copied items as they are. Sorted by name.
std::vector<TensorSpec> hlwq_output_specs(const CtPlan& plan, const HlwqFormat& f);
// Output tensors of the seed's layout: per quantized item K__packed U8 [out·nb·80], K__norms F16 [out, nb],
// K__meta I64 [5], K = seed_q5_key(out_name). Sorted by name.
std::vector<TensorSpec> seed_q5_output_specs(const CtPlan& plan);
// "m.layers.0.self_attn.q_proj" → "m__layers__0__self_attn__q_proj__weight" (the weight's name, '.' → "__").
std::string seed_q5_key(const std::string& module);

// Write one quantized item; return the bytes written.
uint64_t write_hlwq_item(CheckpointWriter& w, const std::string& module, const HlwqPacked& q);
uint64_t write_seed_q5_item(CheckpointWriter& w, const std::string& module, const HlwqPacked& q);

}  // namespace hlwq
