// Name tables for Qwen3.5/3.6-MoE (transformers qwen3_5_moe), shapes derived from the config (SPEC §5).
#include "model/tensor_names.h"

namespace hlwq {

LayerTable<LayerWeights> layer_norm_table(const ModelConfig& c) {
  const int64_t H = c.hidden_size;
  return {{},
          {{"input_layernorm.weight", &LayerWeights::input_norm, {H}},
           {"post_attention_layernorm.weight", &LayerWeights::post_attention_norm, {H}}}};
}

LayerTable<GdnWeights> gdn_table(const ModelConfig& c) {
  const int64_t H = c.hidden_size, Hk = c.linear_n_key_heads, Hv = c.linear_n_value_heads;
  const int64_t dk = c.linear_key_head_dim, dv = c.linear_value_head_dim, K = c.linear_conv_kernel;
  const int64_t C = 2 * Hk * dk + Hv * dv;
  return {{{"linear_attn.in_proj_qkv", &GdnWeights::in_proj_qkv, C, H},
           {"linear_attn.in_proj_z", &GdnWeights::in_proj_z, Hv * dv, H},
           {"linear_attn.in_proj_b", &GdnWeights::in_proj_b, Hv, H},
           {"linear_attn.in_proj_a", &GdnWeights::in_proj_a, Hv, H},
           {"linear_attn.out_proj", &GdnWeights::out_proj, H, Hv * dv}},
          {{"linear_attn.conv1d.weight", &GdnWeights::conv1d, {C, 1, K}},
           {"linear_attn.dt_bias", &GdnWeights::dt_bias, {Hv}},
           {"linear_attn.A_log", &GdnWeights::A_log, {Hv}},
           {"linear_attn.norm.weight", &GdnWeights::norm, {dv}}}};
}

LayerTable<AttentionWeights> attention_table(const ModelConfig& c) {
  const int64_t H = c.hidden_size, Hq = c.n_heads, Hkv = c.n_kv_heads, D = c.head_dim;
  return {{{"self_attn.q_proj", &AttentionWeights::q_proj, Hq * 2 * D, H},
           {"self_attn.k_proj", &AttentionWeights::k_proj, Hkv * D, H},
           {"self_attn.v_proj", &AttentionWeights::v_proj, Hkv * D, H},
           {"self_attn.o_proj", &AttentionWeights::o_proj, H, Hq * D}},
          {{"self_attn.q_norm.weight", &AttentionWeights::q_norm, {D}},
           {"self_attn.k_norm.weight", &AttentionWeights::k_norm, {D}}}};
}

LayerTable<MoeWeights> moe_table(const ModelConfig& c) {
  const int64_t H = c.hidden_size, E = c.n_experts;
  LayerTable<MoeWeights> t{{{"mlp.gate", &MoeWeights::router, E, H}}, {}};
  if (c.shared_expert_intermediate > 0) t.linears.push_back({"mlp.shared_expert_gate", &MoeWeights::shared_gate, 1, H});
  return t;
}

LayerTable<ExpertWeights> expert_table(int64_t hidden, int64_t width) {
  return {{{"gate_proj", &ExpertWeights::gate_proj, width, hidden},
           {"up_proj", &ExpertWeights::up_proj, width, hidden},
           {"down_proj", &ExpertWeights::down_proj, hidden, width}},
          {}};
}

bool tensor_name_ignored(const std::string& name) {
  return name.starts_with("model.visual.") || name.starts_with("mtp.") || name.starts_with("model.mtp.");
}

}  // namespace hlwq
