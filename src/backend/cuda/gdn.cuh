// Gated DeltaNet mixer core on the device (SPEC §5 steps 2–6, without the projections, which are GEMMs):
// causal depthwise conv with its saved state + SiLU, per-head L2 norm of q and k (q · dk^-0.5), β = sigmoid(b),
// g = −exp(A_log)·softplus(a + dt_bias), the delta-rule recurrence on the saved fp32 state, and the gated
// RMSNorm of the output. Long sequences (prefill) run the chunked WY form (gdn_chunked.cuh), the rest a token loop
// inside one launch per layer; both give the same state to summation order, so any split of a sequence does.
// Sequences of a batch: seq i owns tokens [t0, t0 + n) of the batch and state slot `slot`.
// Dimension legend: T tokens, Hk/Hv key/value heads, dk/dv head dims, C = 2·Hk·dk + Hv·dv, K conv width.
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

struct GdnSeq {
  int t0, n, slot;
};

struct GdnDimsDev {
  int Hk, Hv, dk, dv, K;
  float eps;
  int C() const { return 2 * Hk * dk + Hv * dv; }
};

// act [T, C] = silu(conv(x)) for x = proj [T, ·] columns [0, C) (row stride ldp); conv_w fp32 [C, K];
// conv_state fp32 [slots, K-1, C] (oldest first) read and advanced. seqs: device array [n_seq]; max_n: at least the
// most tokens of one sequence.
void gdn_conv(const float* proj, int64_t ldp, const GdnSeq* seqs, int n_seq, int max_n, const float* conv_w,
              float* conv_state, const GdnDimsDev& d, float* act, cudaStream_t st);

// Sequences of at least this many tokens run the chunked form when it is on (a prefill); shorter ones, decode
// steps among them, the token recurrence, whose one pass over the state costs less than the chunk set-up.
inline constexpr int kGdnChunkedMinTokens = 64;

// out [T, Hv·dv] = gated-normed delta-rule output. act [T, C] (q | k | v after conv), z [T, ·] at column 0 with
// row stride ldz, ba [T, ·] with b at columns [0, Hv) and a at [Hv, 2Hv), row stride ldba; A_log, dt_bias [Hv];
// norm_w [dv]; S fp32 [slots, Hv, dk, dv] read and advanced. Needs dk ≤ 128, dv ≤ 512.
// T: tokens of the batch (rows of act/z/out). max_n: the most tokens of any sequence of the batch (the host knows
// it). chunk_ws: gdn_chunked_workspace_floats(T) floats (gdn_chunked.cuh) to run sequences of at least
// kGdnChunkedMinTokens in the chunked form, or null to run every sequence as the token recurrence.
// out_xfrag (optional): out also written as the out-projection's bf16 activations of in_pad columns (norm.cuh).
void gdn_delta_rule(const float* act, const float* z, int64_t ldz, const float* ba, int64_t ldba, const float* A_log,
                    const float* dt_bias, const float* norm_w, const GdnSeq* seqs, int n_seq, int max_n, float* S,
                    const GdnDimsDev& d, int64_t T, float* chunk_ws, float* out, cudaStream_t st,
                    uint32_t* out_xfrag = nullptr, int64_t in_pad = 0);

// Lanes a column of S the token recurrence uses for a grid of `blocks` blocks on a GPU of `sms` SMs: 8 where there is
// at most one block per SM, else 2 (gdn.cu says why). The tests ask it so that both forms are known to run.
int gdn_recurrent_lanes(int64_t blocks, int sms);

}  // namespace hlwq::cuda
