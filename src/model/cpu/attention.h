// Gated full attention (Qwen3.5 full_attention layers), CPU fp32 (SPEC §5): q_proj gives per head
// [query D | gate D]; zero-centred q_norm/k_norm per head; NeoX RoPE (pairs (i, i + r/2)) on the first
// r = D·partial_rotary_factor dims; causal GQA softmax attention with scale D^-0.5 over the KV cache;
// attn *= sigmoid(gate); o_proj.
// Dimension legend: T new tokens, P = pos0 + T cached positions, H hidden, Hq/Hkv heads, D head_dim, r rotary dims.
#pragma once
#include <cstdint>
#include <vector>

#include "io/hf_config.h"
#include "model/cpu/kernels.h"
#include "model/state.h"
#include "model/weights.h"

namespace hlwq {

struct AttentionDims {
  int64_t H, Hq, Hkv, D, r;
  float eps;
  std::vector<float> inv_freq;  // [r/2] θ^(−2i/r), computed in fp32 as transformers does
  static AttentionDims from(const ModelConfig& c);
};

// out [T, H] = attention(x [T, H]) for tokens at positions pos0 .. pos0+T-1; appends their K/V to kv
// (which must hold exactly pos0 positions on entry).
void attention_forward(const CpuKernels& k, const AttentionWeights& w, const AttentionDims& d, const float* x,
                       int64_t T, int64_t pos0, KvCache& kv, float* out);

}  // namespace hlwq
