// The one place that names checkpoint tensors (DESIGN habit 2): for each layer kind, a table of
// (name suffix, destination field, expected shape). The loader walks these tables; nothing else spells a name.
// Names are relative to "<prefix>layers.L." where prefix is "model.language_model." (ConditionalGeneration
// layout) or "model." (text-only layout). Linear entries name the matrix without its suffix: a dense Linear is
// "<name>.weight", a compressed-tensors INT4 one "<name>.weight_packed" + ".weight_scale" (+ ".weight_shape").
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/hf_config.h"
#include "model/weights.h"

namespace hlwq {

template <class W>
struct LinearEntry {
  const char* name;          // e.g. "linear_attn.in_proj_qkv"
  LinearWeight W::*field;
  int64_t out, in;           // W [out, in]
};

template <class W>
struct VectorEntry {
  const char* name;          // full suffix, e.g. "linear_attn.A_log"
  std::vector<float> W::*field;
  Shape shape;               // stored shape (conv1d is [C, 1, K])
};

template <class W>
struct LayerTable {
  std::vector<LinearEntry<W>> linears;
  std::vector<VectorEntry<W>> vectors;
};

// Every layer: the two zero-centred RMSNorms.
LayerTable<LayerWeights> layer_norm_table(const ModelConfig& c);
// linear_attention layers: Gated DeltaNet.
LayerTable<GdnWeights> gdn_table(const ModelConfig& c);
// full_attention layers: gated attention.
LayerTable<AttentionWeights> attention_table(const ModelConfig& c);
// MoE block without the routed experts (router, shared expert and its gate).
LayerTable<MoeWeights> moe_table(const ModelConfig& c);
// One expert MLP, relative to "mlp.experts.E." (routed, per-expert keys) or "mlp.shared_expert.".
LayerTable<ExpertWeights> expert_table(int64_t hidden, int64_t width);

// Fused routed-expert keys (no .weight suffix): gate_up_proj [E, 2I, H] (rows [0, I) gate, [I, 2I) up) and
// down_proj [E, H, I].
inline constexpr const char* kFusedGateUp = "mlp.experts.gate_up_proj";
inline constexpr const char* kFusedDown = "mlp.experts.down_proj";

inline constexpr const char* kEmbedTokens = "embed_tokens.weight";  // [V, H], under the prefix
inline constexpr const char* kFinalNorm = "norm.weight";            // [H], under the prefix
inline constexpr const char* kLmHead = "lm_head";                   // [V, H], top level (Linear name)

// Tensors a text model ignores: the vision tower and the multi-token-prediction head.
bool tensor_name_ignored(const std::string& name);

}  // namespace hlwq
