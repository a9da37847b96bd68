// Weight byte counts of a loaded model (see weight_traffic.h).
#include "perf/weight_traffic.h"

#include "core/dtype.h"

namespace hlwq {

double linear_weight_bytes(const LinearWeight& w) {
  switch (w.format) {
    case LinearFormat::dense: return double(w.weight.nbytes());
    case LinearFormat::u4b8_g128: return double(w.packed.nbytes() + w.scale.nbytes());
    case LinearFormat::hlwq: return double(w.out * (w.hlwq.row_bytes() + w.hlwq.n_blocks() * 2));
  }
  return 0;
}

WeightTraffic weight_traffic(const Model& m) {
  const ModelConfig& cfg = m.config();
  const ModelWeights& w = m.weights();
  WeightTraffic t;
  auto macs = [](const LinearWeight& l) { return double(l.in) * double(l.out); };
  auto lin = [&](const LinearWeight& l) {
    t.dense_step_bytes += linear_weight_bytes(l);
    t.token_macs += macs(l);
  };
  auto vec = [&](const std::vector<float>& v) { t.dense_step_bytes += double(v.size() * sizeof(float)); };
  auto expert = [](const ExpertWeights& e) {
    return linear_weight_bytes(e.gate_proj) + linear_weight_bytes(e.up_proj) + linear_weight_bytes(e.down_proj);
  };
  double all_experts = 0;
  for (size_t l = 0; l < w.layers.size(); ++l) {
    const LayerWeights& lw = w.layers[l];
    vec(lw.input_norm);
    vec(lw.post_attention_norm);
    if (cfg.layer_types[l] == LayerKind::linear_attention) {
      for (const LinearWeight* x : {&lw.gdn.in_proj_qkv, &lw.gdn.in_proj_z, &lw.gdn.in_proj_b, &lw.gdn.in_proj_a,
                                    &lw.gdn.out_proj})
        lin(*x);
      for (const auto* v : {&lw.gdn.conv1d, &lw.gdn.dt_bias, &lw.gdn.A_log, &lw.gdn.norm}) vec(*v);
      const double Hv = double(cfg.linear_n_value_heads), dk = double(cfg.linear_key_head_dim);
      const double dv = double(cfg.linear_value_head_dim);
      const double conv_channels = 2 * double(cfg.linear_n_key_heads) * dk + Hv * dv;
      t.gdn_state_bytes_per_sequence += (Hv * dk * dv + conv_channels * double(cfg.linear_conv_kernel - 1)) * 4;
    } else {
      for (const LinearWeight* x : {&lw.attn.q_proj, &lw.attn.k_proj, &lw.attn.v_proj, &lw.attn.o_proj}) lin(*x);
      vec(lw.attn.q_norm);
      vec(lw.attn.k_norm);
      const double kv_elem = m.options().kv_dtype == KvDtype::bf16 ? 2 : 4;
      t.kv_bytes_per_token += 2 * double(cfg.n_kv_heads * cfg.head_dim) * kv_elem;
      t.attn_macs_per_position += 2 * double(cfg.n_heads * cfg.head_dim);
    }
    const MoeWeights& moe = lw.moe;
    lin(moe.router);
    if (moe.has_shared) {
      for (const LinearWeight* x : {&moe.shared.gate_proj, &moe.shared.up_proj, &moe.shared.down_proj}) lin(*x);
      lin(moe.shared_gate);
    }
    if (!moe.experts.empty()) {
      ++t.n_moe_layers;
      t.expert_bytes = expert(moe.experts[0]);
      const ExpertWeights& e0 = moe.experts[0];
      t.expert_macs = macs(e0.gate_proj) + macs(e0.up_proj) + macs(e0.down_proj);
      for (const ExpertWeights& e : moe.experts) all_experts += expert(e);
    }
  }
  vec(w.final_norm);
  lin(w.lm_head);
  t.lm_head_macs = macs(w.lm_head);
  t.token_macs -= t.lm_head_macs;
  t.embed_row_bytes = double(cfg.hidden_size * int64_t(dtype_size(w.embed.dtype)));
  t.resident_bytes = t.dense_step_bytes + all_experts + (cfg.tie_word_embeddings ? 0 : double(w.embed.nbytes()));
  return t;
}

}  // namespace hlwq
