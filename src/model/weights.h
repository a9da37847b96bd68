// Weights of a Qwen3.5/3.6-MoE text model as the CPU forward reads them. Big matrices stay as stored: every
// LinearWeight is a view into the mmapped checkpoint (dense BF16/F16/F32, or compressed-tensors INT4
// `u4b8_g128`), so ModelWeights must not outlive the Checkpoint it came from (Model owns both).
// Small per-channel vectors (norms, A_log, dt_bias, conv taps) are copied to fp32 at load.
// Dimension legend: H hidden, V vocab, E experts, I expert width, Is shared-expert width, Hq/Hkv attention
// heads, D head_dim, Hk/Hv GDN key/value heads, dk/dv GDN head dims, C = 2·Hk·dk + Hv·dv conv channels, K conv width.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/hlwq_format.h"
#include "quant/hlwq_linear.h"

namespace hlwq {

// How a Linear's matrix W [out, in] (y = x Wᵀ) is stored.
enum class LinearFormat : uint8_t {
  dense,      // weight [out, in] BF16/F16/F32
  u4b8_g128,  // weight_packed I32 [out, in/8] (value q+8 in nibble k%8 of word k/8), weight_scale [out, in/128]
  hlwq,       // HLWQ codes + fp16 block norms + codebook (native, or the seed's hlwq-q5): quant/hlwq_linear.h
};

struct LinearWeight {
  std::string name;  // checkpoint name without the .weight/.weight_packed suffix, for messages and dumps
  LinearFormat format = LinearFormat::dense;
  int64_t out = 0, in = 0;
  TensorView weight;  // dense: [out, in]
  TensorView packed;  // u4b8_g128: [out, in/8] I32
  TensorView scale;   // u4b8_g128: [out, in/128] BF16/F16/F32
  HlwqMatrixView hlwq;  // hlwq: codes [out, ⌈in/128⌉·16·bits] U8, norms [out, ⌈in/128⌉] F16, the codebook
};

struct GdnWeights {  // linear_attn.*
  LinearWeight in_proj_qkv;  // [C, H] rows [q Hk·dk | k Hk·dk | v Hv·dv]
  LinearWeight in_proj_z;    // [Hv·dv, H]
  LinearWeight in_proj_b;    // [Hv, H]
  LinearWeight in_proj_a;    // [Hv, H]
  LinearWeight out_proj;     // [H, Hv·dv]
  std::vector<float> conv1d;   // [C, K] (stored [C, 1, K])
  std::vector<float> dt_bias;  // [Hv]
  std::vector<float> A_log;    // [Hv]
  std::vector<float> norm;     // [dv] plain (not zero-centred) weight of the gated RMSNorm
};

struct AttentionWeights {  // self_attn.*
  LinearWeight q_proj;  // [Hq·2·D, H], per head [query D | gate D]
  LinearWeight k_proj;  // [Hkv·D, H]
  LinearWeight v_proj;  // [Hkv·D, H]
  LinearWeight o_proj;  // [H, Hq·D]
  std::vector<float> q_norm;  // [D] zero-centred
  std::vector<float> k_norm;  // [D] zero-centred
};

struct ExpertWeights {
  LinearWeight gate_proj;  // [I, H]
  LinearWeight up_proj;    // [I, H]
  LinearWeight down_proj;  // [H, I]
};

struct MoeWeights {  // mlp.*
  LinearWeight router;                // mlp.gate [E, H]
  std::vector<ExpertWeights> experts;  // [E]
  bool has_shared = false;
  ExpertWeights shared;              // shared_expert.* ([Is, H], [Is, H], [H, Is])
  LinearWeight shared_gate;          // shared_expert_gate [1, H]
};

struct LayerWeights {
  std::vector<float> input_norm;          // [H] zero-centred
  std::vector<float> post_attention_norm;  // [H] zero-centred
  GdnWeights gdn;                         // linear_attention layers only
  AttentionWeights attn;                  // full_attention layers only
  MoeWeights moe;
};

struct ModelWeights {
  TensorView embed;  // [V, H] BF16/F16/F32
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [H] zero-centred
  LinearWeight lm_head;           // [V, H] (a view of embed when tie_word_embeddings)
  // A native HLWQ checkpoint's quantization_config: its codebook is what every hlwq view points into (shared, so
  // copies of ModelWeights keep it alive). Null otherwise (the seed's Q5 table is a static).
  std::shared_ptr<const HlwqFormat> hlwq_format;
};

}  // namespace hlwq
