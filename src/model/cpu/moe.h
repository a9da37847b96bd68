// Sparse MoE block (SPEC §5): p = softmax(x W_gᵀ) in fp32, top-k, renormalized to sum 1; routed experts
// down(silu(gate x) ⊙ up x) weighted and summed; plus the shared expert × sigmoid(shared_expert_gate · x).
// For T tokens the routed experts run batched: tokens are grouped by expert, and each expert hit by n tokens
// does three [n, ·] matmuls.
// Dimension legend: T tokens, H hidden, E experts, k active experts, I expert width, Is shared width.
#pragma once
#include <cstdint>

#include "model/cpu/kernels.h"
#include "model/weights.h"

namespace hlwq {

// out [T, H] = moe(x [T, H]).
void moe_forward(const CpuKernels& k, const MoeWeights& w, int64_t n_active, const float* x, int64_t T, float* out);

}  // namespace hlwq
