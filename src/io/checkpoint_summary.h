// What a checkpoint holds, by kind of tensor, and the memory plan a user needs to pick a GPU: bytes that stay
// resident (everything but routed experts), bytes of one expert, resident bytes for a given expert-cache size
// (slots per MoE layer, as vLLM's --moe-expert-cache-size), KV cache and recurrent state per sequence.
// Works from names and sizes only, for bf16 and compressed-tensors INT4 checkpoints alike.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/hf_config.h"
#include "io/safetensors.h"

namespace hlwq {

struct KindStats {
  int64_t n_tensors = 0;
  uint64_t bytes = 0;
};

struct CheckpointSummary {
  std::map<std::string, KindStats> kinds;  // "routed experts", "attention", ...
  uint64_t total_bytes = 0;
  uint64_t resident_bytes = 0;     // text model without routed experts (visual and mtp excluded)
  uint64_t expert_bytes = 0;       // one routed expert (gate+up+down), the largest seen
  int64_t n_moe_layers = 0;
  int64_t n_experts = 0;
  uint64_t kv_bytes_per_1k_tokens = 0;   // bf16 K and V of all full-attention layers
  uint64_t recurrent_state_bytes = 0;    // fp32 GDN state + conv state of all linear layers, one sequence
  std::string scheme;  // "bf16", "compressed-tensors pack-quantized int4 g128", ...

  // Resident bytes with `slots` cached experts per MoE layer (slots >= n_experts: everything on the GPU), the
  // routed experts of the first n_cpu_moe MoE layers computed on the CPU and never placed on the GPU (--n-cpu-moe).
  uint64_t resident_with_cache(int64_t slots, int64_t n_cpu_moe = 0) const;
};

CheckpointSummary summarize_checkpoint(const ModelConfig& cfg, const Checkpoint& ck);
// n_cpu_moe: the plan under --n-cpu-moe K (0 ≤ K ≤ the MoE layers), as `run`/`serve` would place it.
std::string format_checkpoint_summary(const ModelConfig& cfg, const CheckpointSummary& s, int64_t n_cpu_moe = 0);
nlohmann::json checkpoint_summary_json(const ModelConfig& cfg, const CheckpointSummary& s, int64_t n_cpu_moe = 0);

}  // namespace hlwq
