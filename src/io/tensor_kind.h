// What a checkpoint tensor is, from its name alone: the one classification that the quantization plan, the
// export summary and `hlwq inspect` share (DESIGN: describe names once). Order matters: the first rule that
// matches wins, so visual and mtp tensors are never mistaken for text-model experts or attention.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace hlwq {

enum class TensorKind : uint8_t {
  visual,          // model.visual.* / visual.*
  mtp,             // mtp.* (multi-token prediction head)
  routed_expert,   // .mlp.experts.*
  shared_expert,   // .shared_expert.* and shared_expert_gate
  router,          // .mlp.gate.
  attention,       // .self_attn.*
  linear_attention,  // .linear_attn.* (Gated DeltaNet)
  embeddings,      // embed_tokens
  lm_head,
  norm,
  dense_mlp,       // .mlp.* of a dense layer
  other,
};

TensorKind tensor_kind_of(const std::string& name);
std::string_view tensor_kind_name(TensorKind k);  // "routed experts", "attention", ...
// Text-model tensors are everything but visual and mtp.
inline bool tensor_kind_is_text(TensorKind k) { return k != TensorKind::visual && k != TensorKind::mtp; }

}  // namespace hlwq
