// What a synthetic checkpoint holds and how each tensor's values are made. The tensor list is derived from the
// loader's own name tables (model/tensor_names.h), so a synthetic checkpoint has exactly the names, shapes and
// dtypes hlwq (and transformers) expect; the CT INT4 form goes through the same plan `hlwq quantize` uses
// (quant/ct_plan.h), so it is named, laid out and ignore-listed exactly like a quantized real checkpoint.
// Values: element i of a tensor is a function of (seed, tensor name, i) only — part of a splitmix64 hash of a
// counter — so the bytes never depend on chunking or thread count. Gaussian values come from a table of the normal
// quantiles at 65,536 midpoints (16 bits each, four per hash: |z| ≤ 4.3), packed words two per hash. Magnitudes
// keep a forward finite and routing spread: Linears and embeddings ~ N(0, 0.02); zero-centred RMSNorm
// weights (the model applies 1 + w) ~ N(0, 0.02), the plain-weight gated norm 1 + N(0, 0.02); conv1d ~ N(0, 0.3)
// (the kaiming-uniform spread of a width-4 kernel); A_log = log U(1, 16) and dt_bias = 1 + N(0, 0.1) (the
// initialisation transformers gives Gated DeltaNet); INT4 nibbles uniform over all 16 codes with per-group scales
// 0.02/7 · U(0.75, 1.25) (bf16); weight_shape = [out, in].
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "io/checkpoint_writer.h"
#include "io/hf_config.h"

namespace hlwq {

enum class SynthFormat : uint8_t { bf16, ct_int4 };
SynthFormat parse_synth_format(const std::string& s);  // "bf16" | "ct-int4"; throws naming the value
const char* synth_format_name(SynthFormat f);

enum class SynthValues : uint8_t {
  normal,          // N(0, 0.02), bf16
  norm_centred,    // N(0, 0.02), bf16 (zero-centred RMSNorm weight)
  norm_plain,      // 1 + N(0, 0.02), bf16
  conv,            // N(0, 0.3), bf16
  a_log,           // log U(1, 16), bf16
  dt_bias,         // 1 + N(0, 0.1), bf16
  int4_packed,     // I32, 8 uniform nibbles per word
  int4_scale,      // BF16, 0.02/7 · U(0.75, 1.25)
  int4_shape,      // I64 [2] = [out, in]
};

struct SynthTensor {
  TensorSpec spec;
  SynthValues values = SynthValues::normal;
  int64_t out = 0, in = 0;  // int4_shape: the matrix [out, in]
};

struct SynthPlan {
  std::vector<SynthTensor> tensors;  // sorted by name
  nlohmann::json quantization_config;  // null for bf16
};

// The bf16 tensors of the text model cfg describes (qwen3_5_moe only), sorted by name: embeddings, per layer the
// norms, mixer (GDN or gated attention), router, shared expert and per-expert keys, final norm, lm_head (unless
// tied).
std::vector<TensorSpec> synth_bf16_specs(const ModelConfig& cfg);
SynthPlan synth_plan(const ModelConfig& cfg, SynthFormat format);

uint64_t synth_tensor_seed(uint64_t seed, const std::string& name);
// Writes elements [first, first + n) of t (seeded by tensor_seed) to dst, in t's dtype.
void synth_fill(const SynthTensor& t, uint64_t tensor_seed, uint64_t first, uint64_t n, void* dst);

}  // namespace hlwq
