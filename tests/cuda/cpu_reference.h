// The CPU reference of the CUDA differential tests: the CPU backend's op functions (src/backend/cpu, the numerical
// reference of every backend) behind plain signatures, each call allocating the workspace and per-thread scratch
// that the CPU backend would hold. Dimension legend as in src/backend/cpu/{gdn,attention,moe}.h.
#pragma once
#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "backend/cpu/attention.h"
#include "backend/cpu/gdn.h"
#include "model/weights.h"

namespace hlwq::test {

// y [T, w.out] = x [T, w.in] · Wᵀ
void ref_linear(const LinearWeight& w, const float* x, int64_t T, float* y);
// out [T, H] = MoE block (router, top-k, shared + routed experts) of x [T, H]
void ref_moe(const MoeWeights& w, int64_t k, const float* x, int64_t T, float* out);
// out [T, H] = GDN layer of x for the batch's sequences; S [slots, Hv, dk, dv] and conv [slots, K-1, C] advanced
void ref_gdn(const GdnWeights& w, const GdnDims& d, const float* x, int64_t T, std::span<const BatchSeq> seqs, float* S,
             float* conv, float* out);
// out [T, H] = attention layer of x; K/V written into fp32 pages [B, block_tokens, Hkv, D] through the block tables
void ref_attention(const AttentionWeights& w, const AttentionDims& d, const float* x, int64_t T,
                   std::span<const BatchSeq> seqs, float* k_pages, float* v_pages, int64_t block_tokens, float* out);

}  // namespace hlwq::test
