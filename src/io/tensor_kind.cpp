#include "io/tensor_kind.h"

namespace hlwq {

TensorKind tensor_kind_of(const std::string& n) {
  auto has = [&](const char* s) { return n.find(s) != std::string::npos; };
  auto starts = [&](const char* s) { return n.rfind(s, 0) == 0; };
  if (starts("model.visual.") || starts("visual.")) return TensorKind::visual;
  if (starts("mtp.") || has(".mtp.")) return TensorKind::mtp;
  if (has(".mlp.experts.")) return TensorKind::routed_expert;
  if (has(".shared_expert.") || has("shared_expert_gate")) return TensorKind::shared_expert;
  if (has(".mlp.gate.")) return TensorKind::router;
  if (has(".self_attn.")) return TensorKind::attention;
  if (has(".linear_attn.")) return TensorKind::linear_attention;
  if (has("embed_tokens")) return TensorKind::embeddings;
  if (starts("lm_head")) return TensorKind::lm_head;
  if (has("norm")) return TensorKind::norm;
  if (has(".mlp.")) return TensorKind::dense_mlp;
  return TensorKind::other;
}

std::string_view tensor_kind_name(TensorKind k) {
  switch (k) {
    case TensorKind::visual: return "visual";
    case TensorKind::mtp: return "mtp";
    case TensorKind::routed_expert: return "routed experts";
    case TensorKind::shared_expert: return "shared expert";
    case TensorKind::router: return "router";
    case TensorKind::attention: return "attention";
    case TensorKind::linear_attention: return "linear attention (GDN)";
    case TensorKind::embeddings: return "embeddings";
    case TensorKind::lm_head: return "lm_head";
    case TensorKind::norm: return "norms";
    case TensorKind::dense_mlp: return "dense mlp";
    case TensorKind::other: return "other";
  }
  return "?";
}

}  // namespace hlwq
