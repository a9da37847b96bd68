// Gated DeltaNet (Qwen3.5 linear_attention layers), CPU fp32 (SPEC §5), over a batch of sequences:
//   qkv = in_proj_qkv(x) → causal depthwise conv (width K, state = last K-1 inputs) → SiLU;
//   q, k L2-normalized per head, q *= dk^-0.5; β = sigmoid(b); g = −exp(A_log)·softplus(a + dt_bias);
//   per value head: S ← e^g S; S ← S + k ⊗ β(v − Sᵀk); o = Sᵀq;  o = rmsnorm(o)·w·silu(z); out_proj.
// Projections run over all tokens of the batch at once; the conv and the delta rule run per sequence on that
// sequence's slot of the layer's state. The delta rule has two equal forms: the token recurrence (decode) and the
// chunked WY/UT form (prefill); both start from and leave the saved state, so any split of a sequence into calls
// gives the same result.
// Dimension legend: T batch tokens, n tokens of one sequence, H hidden, Hk/Hv key/value heads, dk/dv head dims,
// C = 2·Hk·dk + Hv·dv conv channels, K conv width, L chunk length (≤ kGdnChunk), S max_seqs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "backend/backend.h"
#include "backend/cpu/cpu_ctx.h"
#include "io/hf_config.h"
#include "model/weights.h"

namespace hlwq {

inline constexpr int64_t kGdnChunk = 64;

struct GdnDims {
  int64_t H, Hk, Hv, dk, dv, K;
  float eps;
  int64_t C() const { return 2 * Hk * dk + Hv * dv; }
  int64_t conv_state_floats() const { return (K - 1) * C(); }      // per slot: conv [K-1, C], oldest first
  int64_t recurrent_state_floats() const { return Hv * dk * dv; }  // per slot: S [Hv, dk, dv]
  static GdnDims from(const ModelConfig& c);
};

// One GDN layer's state for every slot of the pool.
struct GdnLayerState {
  float* S;     // [S, Hv, dk, dv]
  float* conv;  // [S, K-1, C]
};

// Workspace of gdn_forward, each sized for the largest batch.
struct GdnBuffers {
  float* qkv_raw;  // [T, C] in_proj_qkv output (pre-conv)
  float* qkv;      // [T, C] after conv + SiLU
  float* z;        // [T, Hv·dv]
  float* b;        // [T, Hv]
  float* a;        // [T, Hv]
  float* o;        // [T, Hv·dv]
};

// Scratch floats one thread needs for sequences of up to n_max tokens.
size_t gdn_scratch_floats(const GdnDims& d, int64_t n_max);

// out [T, H] = GDN(x [T, H]) for the batch's sequences, advancing each one's slot of st.
void gdn_forward(const CpuCtx& c, const GdnWeights& w, const GdnDims& d, const float* x, int64_t T,
                 std::span<const BatchSeq> seqs, GdnLayerState st, const GdnBuffers& buf, float* out,
                 GdnMode mode = GdnMode::auto_select);

// The delta rule for one value head. q, k [T, dk] (normalized, q scaled), v [T, dv], g [T] (log decay ≤ 0),
// beta [T] in [0, 1]; S [dk, dv] in/out; o [T, dv].
void gdn_core_recurrent(const CpuCtx& c, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                        const float* v, const float* g, const float* beta, float* S, float* o);
void gdn_core_chunked(const CpuCtx& c, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, float* S, float* o);

}  // namespace hlwq
