// Gated DeltaNet (Qwen3.5 linear_attention layers), CPU fp32 (SPEC §5):
//   qkv = in_proj_qkv(x) → causal depthwise conv (width K, state = last K-1 inputs) → SiLU;
//   q, k L2-normalized per head, q *= dk^-0.5; β = sigmoid(b); g = −exp(A_log)·softplus(a + dt_bias);
//   per value head: S ← e^g S; S ← S + k ⊗ β(v − Sᵀk); o = Sᵀq;  o = rmsnorm(o)·w·silu(z); out_proj.
// The delta rule has two equal forms: the token recurrence (decode) and the chunked WY/UT form (prefill);
// both start from and leave the saved state, so any split of a sequence into calls gives the same result.
// Dimension legend: T tokens, H hidden, Hk/Hv key/value heads, dk/dv head dims, C = 2·Hk·dk + Hv·dv, K conv width,
// L chunk length (≤ kGdnChunk).
#pragma once
#include <cstdint>

#include "io/hf_config.h"
#include "model/cpu/kernels.h"
#include "model/state.h"
#include "model/weights.h"

namespace hlwq {

inline constexpr int64_t kGdnChunk = 64;

struct GdnDims {
  int64_t H, Hk, Hv, dk, dv, K;
  float eps;
  int64_t C() const { return 2 * Hk * dk + Hv * dv; }
  int64_t conv_state_floats() const { return (K - 1) * C(); }  // GdnState::conv [K-1, C]
  int64_t recurrent_state_floats() const { return Hv * dk * dv; }  // GdnState::S [Hv, dk, dv]
  static GdnDims from(const ModelConfig& c);
};

enum class GdnMode : uint8_t { auto_select, recurrent, chunked };

// Zero state for one layer.
GdnState gdn_state_new(const GdnDims& d);

// out [T, H] = GDN(x [T, H]), advancing st.
void gdn_forward(const CpuKernels& k, const GdnWeights& w, const GdnDims& d, const float* x, int64_t T, GdnState& st,
                 float* out, GdnMode mode = GdnMode::auto_select);

// The delta rule for one value head. q, k [T, dk] (normalized, q scaled), v [T, dv], g [T] (log decay ≤ 0),
// beta [T] in [0, 1]; S [dk, dv] in/out; o [T, dv].
void gdn_core_recurrent(const CpuKernels& kern, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                        const float* v, const float* g, const float* beta, float* S, float* o);
void gdn_core_chunked(const CpuKernels& kern, int64_t T, int64_t dk, int64_t dv, const float* q, const float* k,
                      const float* v, const float* g, const float* beta, float* S, float* o);

}  // namespace hlwq
