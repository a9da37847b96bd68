// Sparse MoE block (SPEC §5), CPU, in the three steps of the backend interface:
//   route:   p = softmax(x W_gᵀ) in fp32, top-k, renormalized to sum 1 (ties to the lower expert index, NaN last);
//   hint:    the next layer's router on this hidden state → its likely experts, for the expert provider;
//   experts: tokens of the whole batch grouped by expert; the provider says where each selected expert's weights
//            are; each routed expert and the shared expert compute down(silu(gate x) ⊙ up x); per token the
//            shared output × sigmoid(shared_expert_gate · x) plus the routed outputs weighted, in expert-index order.
// The expert work is split by (expert, block of output rows) in two phases — gate/up rows, then down rows — inside
// one parallel region, so every core works even when a decode step has fewer experts than threads, and the shared
// expert runs in the same region.
// Dimension legend: T batch tokens, H hidden, E experts, k active experts, I expert width, Is shared width,
// Im = max(I, Is), RB rows per work item.
#pragma once
#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_ctx.h"
#include "model/weights.h"
#include "moe/expert_provider.h"

namespace hlwq {

struct MoeDims {
  int64_t H, E, k, I, Is;  // Is = 0: no shared expert
  int64_t Im() const { return I > Is ? I : Is; }
};

// Workspace of the MoE steps, sized for the largest batch (Tm tokens).
struct MoeBuffers {
  float* probs;             // [Tm, E] router logits, then probabilities
  int32_t* order;           // [E] scratch of the top-k selection
  int32_t* ids;             // [Tm, k] selected experts of each token, ascending
  float* weights;           // [Tm, k] their renormalized routing weights
  int32_t* hint_ids;        // [Tm, k] the next layer's predicted experts (moe_hint)
  int32_t* offset;          // [E + 1] grouped rows of expert e are [offset[e], offset[e + 1])
  int32_t* row_token;       // [Tm·k] token of each grouped row
  int32_t* token_rows;      // [Tm, k] grouped row of each token's j-th choice
  int32_t* used;            // [E] distinct experts of the batch, ascending
  const ExpertWeights** where;  // [E] their weights, from the provider
  int64_t n_used;
  float* xg;                // [Tm·k, H] inputs grouped by expert
  float* act;               // [Tm·k + Tm, Im] silu(gate)·up: routed rows, then the shared expert's Tm rows
  float* ye;                // [Tm·k + Tm, H] expert outputs, same rows
  float* shared_gate;       // [Tm] sigmoid(shared_expert_gate · x)
};

// Scratch floats one thread needs (besides linear_rows' own) for batches of up to Tm tokens.
size_t moe_scratch_floats(int64_t Tm);

// Routing of x [T, H] into buf.ids / buf.weights.
void moe_route(const CpuCtx& c, const MoeWeights& w, const MoeDims& d, const float* x, int64_t T, MoeBuffers& buf);
// The top-k experts of `router` for x [T, H] into buf.hint_ids [T, k].
void moe_predict(const CpuCtx& c, const LinearWeight& router, const MoeDims& d, const float* x, int64_t T,
                 MoeBuffers& buf);
// out [T, H] = shared + routed experts of x [T, H] for the routing in buf; experts of MoE layer `layer` come
// from the provider (acquired and released inside).
void moe_experts(const CpuCtx& c, const MoeWeights& w, const MoeDims& d, int layer, ExpertProvider& provider,
                 const float* x, int64_t T, MoeBuffers& buf, float* out);

}  // namespace hlwq
