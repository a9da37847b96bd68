// Bytes of a loaded model's weights as the forward reads them, for speed-of-light figures (DESIGN habit 11): what
// one forward step reads besides its routed experts (every mixer, router, shared expert, norm and the lm_head, each
// once per step whatever the batch), one routed expert, one embedding row, everything resident, and the per-token
// KV cache and per-sequence recurrent state. Counted from the weights as loaded (packed INT4 + scales, bf16, native
// HLWQ codes; norm and GDN vectors as the fp32 the model keeps).
#pragma once
#include <cstdint>

#include "model/model.h"

namespace hlwq {

struct WeightTraffic {
  double dense_step_bytes = 0;    // read once per step: all non-routed weights and the lm_head
  double expert_bytes = 0;        // one routed expert (gate + up + down); all experts share one shape
  double embed_row_bytes = 0;     // one token's embedding row
  double resident_bytes = 0;      // every weight once (embedding and lm_head counted once when tied)
  double kv_bytes_per_token = 0;  // K and V of every full-attention layer at the model's KV dtype
  double gdn_state_bytes_per_sequence = 0;  // fp32 delta-rule state + conv window of every GDN layer
  int64_t n_moe_layers = 0;
  // Multiply-accumulates, for the compute ceiling of prefill: one token through every linear layer except its
  // routed experts and the lm_head; one routed expert; the lm_head (one logits row); and attention scores and
  // values per position attended (QKᵀ and PV of every full-attention layer). The GDN recurrence (≈ 1 % of a
  // Qwen3.6 token's work) is not counted.
  double token_macs = 0, expert_macs = 0, lm_head_macs = 0, attn_macs_per_position = 0;
};

double linear_weight_bytes(const LinearWeight& w);
WeightTraffic weight_traffic(const Model& m);

}  // namespace hlwq
