// compressed-tensors `pack-quantized` INT4 checkpoints (SPEC §3): key names of a quantized Linear, the
// quantization_config block written into config.json (exactly the seed's, which vLLM and compressed-tensors
// >= 0.11 accept), and the keep-list of tensors that are never quantized.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hlwq {

constexpr int kCtGroupSize = 128;  // inputs per scale
constexpr int kCtPackFactor = 8;   // int4 values per int32 word

// "P.weight" -> "P"; a name without the ".weight" suffix is returned unchanged.
std::string ct_base_name(const std::string& weight_name);
inline std::string ct_packed_name(const std::string& base) { return base + ".weight_packed"; }
inline std::string ct_scale_name(const std::string& base) { return base + ".weight_scale"; }
inline std::string ct_shape_name(const std::string& base) { return base + ".weight_shape"; }

// True for tensors SPEC §3 keeps in the model dtype whatever their shape: embeddings, lm_head (unless
// quantize_lm_head), router gates, in_proj_a/b/ba, conv1d, A_log, dt_bias, norms, visual and mtp tensors.
bool ct_name_is_kept(const std::string& name, bool quantize_lm_head = false);
// Marlin's shape rule: out % 64 == 0 and in % 128 == 0.
bool ct_shape_is_marlin(int64_t out, int64_t in);

// The quantization_config object; extra_ignore lists module names (no ".weight") of Linears that had to stay
// unquantized (shape rule), so vLLM does not expect packed weights for them. extra_patterns are "re:" ignore
// patterns appended after the seed's fixed ones, for keep-listed Linears of other architectures (in_proj_ba).
nlohmann::json ct_quantization_config(const std::vector<std::string>& extra_ignore, bool quantize_lm_head = false,
                                      const std::vector<std::string>& extra_patterns = {});

}  // namespace hlwq
