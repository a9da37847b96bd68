// Gated full attention (Qwen3.5 full_attention layers), CPU (SPEC §5), over a batch of sequences and the paged KV
// cache: q_proj gives per head [query D | gate D]; zero-centred q_norm/k_norm per head; NeoX RoPE (pairs
// (i, i + r/2)) on the first r = D·partial_rotary_factor dims at each token's own position; each token's K/V is
// written into its sequence's pages; causal GQA softmax attention with scale D^-0.5 over the sequence's cached
// positions; attn *= sigmoid(gate); o_proj.
// Attention runs per (sequence, KV head, tile of up to kAttnQueryTile queries): one work item reads each cached K/V
// row of its head once for all rep = Hq/Hkv query heads and all queries of its tile, with an online (streaming)
// softmax over KV pages. When there are fewer tiles than threads (decode of few sequences over long contexts) the
// cached positions of each tile are split across threads and the partial softmax states are merged afterwards.
// Dimension legend: T batch tokens, H hidden, Hq/Hkv heads, D head_dim, r rotary dims, B KV blocks of bt positions,
// R = rows of a work item (queries × rep).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "backend/backend.h"
#include "backend/cpu/cpu_ctx.h"
#include "io/hf_config.h"
#include "model/weights.h"

namespace hlwq {

inline constexpr int64_t kAttnQueryTile = 16;  // queries of one sequence per work item

struct AttentionDims {
  int64_t H, Hq, Hkv, D, r;
  float eps;
  std::vector<float> inv_freq;  // [r/2] θ^(−2i/r), computed in fp32 as transformers does
  static AttentionDims from(const ModelConfig& c);
};

// One attention layer's KV pages: K and V [B, bt, Hkv, D] each, stored as kv_dtype (uint16_t bf16 or float).
struct KvLayer {
  void* k;
  void* v;
  int64_t block_tokens;
  KvDtype dtype;
};

// Workspace of attention_forward, sized for the largest batch.
struct AttentionBuffers {
  float* qg;    // [T, Hq, 2D] per head [query | gate]
  float* kn;    // [T, Hkv, D] new keys (post-norm, post-RoPE), fp32
  float* vn;    // [T, Hkv, D] new values
  float* attn;  // [T, Hq, D]
  float* part;  // [n_parts, R_max, D + 2] partial softmax states of split tiles: acc [D], max, sum
  int64_t n_parts;  // capacity of part, in work items
};

// R_max: rows of the largest work item.
inline int64_t attention_rows_max(const AttentionDims& d) { return kAttnQueryTile * (d.Hq / d.Hkv); }
size_t attention_scratch_floats(const AttentionDims& d, int64_t block_tokens);

// out [T, H] = attention(x [T, H]) for the batch's sequences; appends each token's K/V at its position into its
// sequence's pages (every block a sequence reaches must be in its table).
void attention_forward(const CpuCtx& c, const AttentionWeights& w, const AttentionDims& d, const float* x, int64_t T,
                       std::span<const BatchSeq> seqs, const KvLayer& kv, const AttentionBuffers& buf, float* out);

}  // namespace hlwq
