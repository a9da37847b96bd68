// Hugging Face config.json -> typed ModelConfig for the MoE families hlwq runs: qwen3_5_moe (nested under
// text_config, or the flat text-only qwen3_5_moe_text form), qwen3_next and qwen3_moe. Every field that
// changes the math is read explicitly; a value hlwq does not implement (another activation, a rope scaling,
// attention bias, ...) is an error naming the field, never a silent default (SPEC §5).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/read_file.h"

namespace hlwq {

enum class ModelArch { qwen3_5_moe, qwen3_next, qwen3_moe };
enum class LayerKind { linear_attention, full_attention };

std::string_view model_arch_name(ModelArch a);

// compressed-tensors quantization_config (SPEC §3), as far as hlwq reads it.
struct QuantConfig {
  std::string quant_method;  // "compressed-tensors", or "hlwq" (native codes; full block in io/hlwq_format.h)
  std::string format;        // "pack-quantized" or "hlwq-native"
  int num_bits = 4;
  int group_size = 128;
  bool symmetric = true;
  std::vector<std::string> ignore;  // names and "re:" patterns kept unquantized
};

struct ModelConfig {
  ModelArch arch = ModelArch::qwen3_5_moe;
  std::string model_type;        // as written at the top level
  bool nested = false;           // text model under text_config (ConditionalGeneration layout)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t n_layers = 0;
  std::vector<LayerKind> layer_types;  // [n_layers]
  // gated full attention
  int64_t n_heads = 0, n_kv_heads = 0, head_dim = 0;
  double rope_theta = 10000.0;
  double partial_rotary_factor = 1.0;
  int64_t max_position_embeddings = 0;
  // Gated DeltaNet (linear attention); zero for qwen3_moe
  int64_t linear_n_key_heads = 0, linear_n_value_heads = 0;
  int64_t linear_key_head_dim = 0, linear_value_head_dim = 0, linear_conv_kernel = 0;
  // MoE
  int64_t n_experts = 0, n_experts_active = 0;
  int64_t moe_intermediate = 0, shared_expert_intermediate = 0;  // 0: no shared expert
  bool norm_topk_prob = true;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  std::vector<int64_t> eos_token_ids;
  std::optional<QuantConfig> quant;
  nlohmann::json raw;  // the whole file, for writing derived configs

  int64_t rotary_dim() const { return int64_t(double(head_dim) * partial_rotary_factor); }
  int64_t n_full_attention_layers() const;
  int64_t n_linear_attention_layers() const;
};

ModelConfig parse_model_config(const nlohmann::json& j, const std::string& where = "config.json");
ModelConfig load_model_config(const std::string& model_dir);  // reads <dir>/config.json

}  // namespace hlwq
