// Gated DeltaNet kernels (see gdn.cuh).
// gdn_conv: one thread per (sequence, channel, chunk of kConvChunk tokens) walks the chunk's tokens with a sliding
// window of K inputs (the conv reads inputs only, so chunks are independent: a prefill's run in parallel; the token
// loop over a whole 4096-token sequence took 3 ms a layer on the H200, bench/cuda/NOTES.md fourteenth session).
// gdn_delta_rule: long sequences in the chunked form (gdn_chunked.cu); the others (every one without a workspace)
// in the token recurrence, one block per (sequence, value head, 32 columns of S); P adjacent lanes (Pc … Pc+P−1) own
// column c of S [dk, dv], dk/P rows each, in registers for the whole token loop; per token: S ← e^g S;
// u = β (v − Sᵀk); S += k uᵀ; o = Sᵀq, the column sums by a log2 P-level shuffle (every lane of the column gets the
// same bits: each level adds the same two values). Then a second kernel applies the gated RMSNorm over each head's
// dv outputs. P is 8 where there is at most one block per SM, else 2. With few warps on each scheduler the kernel is
// bound by each warp's instruction chain, not by the 4 MB of state a layer reads and writes (ncu), and 8 lanes a
// column have a quarter of the chain 2 lanes have; with more, it is bound by the instructions issued, and 8 lanes
// issue more (each repeats a token's per-block work: q, k, the norms' barriers). Measured on the H200 (132 SMs,
// bench/cuda/NOTES.md ninth and tenth sessions): 8 lanes faster at one sequence (128 blocks), slower at 4 (512) and
// 16 (2,048, which no longer fit the GPU at once).
#include <climits>
#include <cmath>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gdn.cuh"
#include "backend/cuda/gdn_chunked.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/norm.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kMaxK = 8;        // conv width
constexpr int kConvChunk = 64;  // tokens of a sequence one conv thread walks (≥ kMaxK − 1: only chunk 0 reads the state)
constexpr int kMaxDk = 128;
constexpr int kColTile = 32;  // columns of S per block: 4 blocks per 128-wide head, so decode fills more SMs

__device__ __forceinline__ float softplus_f(float x) { return x > 20.f ? x : log1pf(expf(x)); }

__global__ void conv_kernel(const float* __restrict__ proj, int64_t ldp, const GdnSeq* __restrict__ seqs,
                            const float* __restrict__ conv_w, float* conv_state, int C, int K, float* act) {
  HLWQ_PDL_EARLY_READS("the weights, the batch's sequences (uploaded before the step) and the conv state, which "
                       "only this kernel writes; proj, from the kernel before, after the wait");
  const int c = blockIdx.x * blockDim.x + threadIdx.x, i0 = int(blockIdx.z) * kConvChunk;
  const GdnSeq s = seqs[blockIdx.y];
  float* cs = conv_state + int64_t(s.slot) * (K - 1) * C;
  const bool first = blockIdx.z == 0;  // only the first chunk reads and writes the state: no other block touches it
  float w[kMaxK], old[kMaxK - 1];
#pragma unroll
  for (int j = 0; j < kMaxK; ++j) {
    w[j] = c < C && j < K ? conv_w[int64_t(c) * K + j] : 0.f;
    if (j < kMaxK - 1) old[j] = c < C && first && j < K - 1 ? cs[int64_t(j) * C + c] : 0.f;
  }
  HLWQ_PDL_PREAMBLE();
  if (c >= C || i0 >= s.n) return;
  // x_i: input i of the sequence, i < 0 the state's entry K − 1 + i (only the first chunk reaches back that far)
  auto x = [&](int i) {
    if (i >= 0) return proj[(s.t0 + int64_t(i)) * ldp + c];
    float v = 0.f;
#pragma unroll
    for (int m = 0; m < kMaxK - 1; ++m)
      if (m == K - 1 + i) v = old[m];
    return v;
  };
  float win[kMaxK];  // win[j] = x_{i − (K − 1) + j} for the token i at hand
#pragma unroll
  for (int j = 0; j < kMaxK - 1; ++j) win[j] = j < K - 1 ? x(i0 - (K - 1) + j) : 0.f;
  const int i1 = min(s.n, i0 + kConvChunk);
  for (int i = i0; i < i1; ++i) {
    const int64_t t = s.t0 + i;
    float acc = 0.f;
#pragma unroll
    for (int j = 0; j < kMaxK; ++j) {
      if (j == K - 1) win[j] = proj[t * ldp + c];
      if (j < K) acc += w[j] * win[j];
    }
    act[t * C + c] = silu_f(acc);
#pragma unroll
    for (int j = 0; j < kMaxK - 1; ++j)
      if (j < K - 1) win[j] = win[j + 1];
  }
  if (first)  // the sequence's last K − 1 inputs (reaching into the old state when it has fewer tokens)
#pragma unroll
    for (int j = 0; j < kMaxK - 1; ++j)
      if (j < K - 1) cs[int64_t(j) * C + c] = x(s.n - (K - 1) + j);
}

template <int P>  // lanes per column of S
__global__ void __launch_bounds__(kColTile * P) recurrent_kernel(
    const float* __restrict__ act, const float* __restrict__ z, int64_t ldz, const float* __restrict__ ba, int64_t ldba,
    const float* __restrict__ A_log, const float* __restrict__ dt_bias, const GdnSeq* __restrict__ seqs, int max_n,
    float* S, GdnDimsDev d, float* out) {
  HLWQ_PDL_EARLY_READS("the sequences (uploaded before the step), the gate parameters and this block's columns of "
                       "S: S is written only by this kernel (and by the chunked form, for the sequences this one "
                       "skips); act, z and ba, from the kernels before, after the wait");
  constexpr int kMaxRows = kMaxDk / P;  // rows of S per lane
  extern __shared__ float sm[];  // q [dk] | k [dk]
  __shared__ float scratch[32];
  float* qs = sm;
  float* ks = sm + d.dk;
  const int ntiles = (d.dv + kColTile - 1) / kColTile;
  const int h = blockIdx.x / ntiles, tid = threadIdx.x, col = (blockIdx.x % ntiles) * kColTile + tid / P,
            part = tid % P;
  const GdnSeq sq = seqs[blockIdx.y];
  const bool mine = sq.n <= max_n;  // a long sequence of this batch runs the chunked form
  const int rep = d.Hv / d.Hk, kh = h / rep, C = 2 * d.Hk * d.dk + d.Hv * d.dv;
  const int hd = (d.dk + P - 1) / P, a0 = part * hd, na = min(hd, d.dk - a0);  // this lane's rows
  const bool active = mine && col < d.dv;
  float* Sh = S + (int64_t(sq.slot) * d.Hv + h) * d.dk * d.dv;
  float s[kMaxRows];
#pragma unroll
  for (int i = 0; i < kMaxRows; ++i) s[i] = (active && i < na) ? Sh[int64_t(a0 + i) * d.dv + col] : 0.f;
  const float qscale = rsqrtf(float(d.dk)), A = -expf(A_log[h]), dtb = dt_bias[h];
  // the wait comes before any return: a block that left without it would release the next kernel before the kernel
  // before this one has completed (pdl.cuh)
  HLWQ_PDL_PREAMBLE();
  if (!mine) return;
  for (int i = 0; i < sq.n; ++i) {
    const int64_t t = sq.t0 + i;
    const float* row = act + t * C;
    // every thread is done reading the previous token's q and k before they are overwritten (the warps of a block
    // do not run in lockstep)
    if (i > 0) __syncthreads();
    // q, k of key head kh, L2-normalized
    float sqq = 0.f, skk = 0.f;
    for (int j = tid; j < d.dk; j += blockDim.x) {
      const float qv = row[kh * d.dk + j], kv = row[d.Hk * d.dk + kh * d.dk + j];
      qs[j] = qv;
      ks[j] = kv;
      sqq += qv * qv;
      skk += kv * kv;
    }
    sqq = block_sum(sqq, scratch);  // its barriers also publish qs/ks
    skk = block_sum(skk, scratch);
    const float rq = qscale * rsqrtf(sqq + 1e-6f), rk = rsqrtf(skk + 1e-6f);
    const float beta = 1.f / (1.f + expf(-ba[t * ldba + h]));
    const float g = A * softplus_f(ba[t * ldba + d.Hv + h] + dtb);
    const float decay = expf(g);
    const float v = active ? row[2 * d.Hk * d.dk + h * d.dv + col] : 0.f;
    float kS = 0.f;
#pragma unroll
    for (int a = 0; a < kMaxRows; ++a)
      if (a < na) {
        s[a] *= decay;
        kS += ks[a0 + a] * s[a];
      }
#pragma unroll
    for (int m = 1; m < P; m <<= 1) kS += __shfl_xor_sync(0xffffffffu, kS, m);
    kS *= rk;
    const float u = beta * (v - kS);
    float o = 0.f;
#pragma unroll
    for (int a = 0; a < kMaxRows; ++a)
      if (a < na) {
        s[a] += ks[a0 + a] * rk * u;
        o += qs[a0 + a] * s[a];
      }
#pragma unroll
    for (int m = 1; m < P; m <<= 1) o += __shfl_xor_sync(0xffffffffu, o, m);
    o *= rq;
    if (active && part == 0) out[t * int64_t(d.Hv) * d.dv + int64_t(h) * d.dv + col] = o;
  }
#pragma unroll
  for (int i = 0; i < kMaxRows; ++i)
    if (active && i < na) Sh[int64_t(a0 + i) * d.dv + col] = s[i];
}

// Launches the recurrence with P lanes a column.
template <int P>
void launch_recurrent(dim3 grid, size_t smem, cudaStream_t st, const float* act, const float* z, int64_t ldz,
                      const float* ba, int64_t ldba, const float* A_log, const float* dt_bias, const GdnSeq* seqs,
                      int max_n, float* S, const GdnDimsDev& d, float* out) {
  recurrent_kernel<P><<<grid, kColTile * P, smem, st>>>(act, z, ldz, ba, ldba, A_log, dt_bias, seqs, max_n, S, d, out);
  HLWQ_CUDA_LAUNCH_CHECK("gdn_recurrent ({} lanes a column) {} heads, {} sequences", P, d.Hv, grid.y);
}

}  // namespace

int gdn_recurrent_lanes(int64_t blocks, int sms) { return blocks <= sms ? 8 : 2; }

void gdn_conv(const float* proj, int64_t ldp, const GdnSeq* seqs, int n_seq, int max_n, const float* conv_w,
              float* conv_state, const GdnDimsDev& d, float* act, cudaStream_t st) {
  HLWQ_CHECK(d.K >= 2 && d.K <= kMaxK, "gdn_conv: conv width {} outside [2, {}]", d.K, kMaxK);
  if (n_seq == 0 || max_n <= 0) return;
  const dim3 grid(unsigned((d.C() + 127) / 128), unsigned(n_seq), unsigned((max_n + kConvChunk - 1) / kConvChunk));
  conv_kernel<<<grid, 128, 0, st>>>(proj, ldp, seqs, conv_w, conv_state, d.C(), d.K, act);
  HLWQ_CUDA_LAUNCH_CHECK("gdn_conv {} channels, {} sequences", d.C(), n_seq);
}

void gdn_delta_rule(const float* act, const float* z, int64_t ldz, const float* ba, int64_t ldba, const float* A_log,
                    const float* dt_bias, const float* norm_w, const GdnSeq* seqs, int n_seq, int max_n, float* S,
                    const GdnDimsDev& d, int64_t T, float* chunk_ws, float* out, cudaStream_t st, uint32_t* out_xfrag,
                    int64_t in_pad) {
  HLWQ_CHECK(d.dk >= 1 && d.dk <= kMaxDk && d.dv <= 512 && d.Hv % d.Hk == 0,
             "gdn_delta_rule: dk {} dv {} Hk {} Hv {} unsupported (dk ≤ {}, dv ≤ 512)", d.dk, d.dv, d.Hk, d.Hv, kMaxDk);
  if (n_seq == 0) return;
  const bool chunked = chunk_ws && max_n >= kGdnChunkedMinTokens;
  if (chunked)
    gdn_chunked(act, ba, ldba, A_log, dt_bias, seqs, n_seq, kGdnChunkedMinTokens, max_n, S, d, chunk_ws, T, out, st);
  if (!chunked || n_seq > 1) {  // the recurrence takes the sequences the chunked form left
    const int ntiles = (d.dv + kColTile - 1) / kColTile;
    const dim3 grid(unsigned(d.Hv * ntiles), unsigned(n_seq));
    const int rec_max = chunked ? kGdnChunkedMinTokens - 1 : INT_MAX;
    const size_t smem = size_t(2 * d.dk) * sizeof(float);
    int sms = 0;
    HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "gdn_recurrent: SM count");
    if (gdn_recurrent_lanes(int64_t(grid.x) * grid.y, sms) == 8)
      launch_recurrent<8>(grid, smem, st, act, z, ldz, ba, ldba, A_log, dt_bias, seqs, rec_max, S, d, out);
    else
      launch_recurrent<2>(grid, smem, st, act, z, ldz, ba, ldba, A_log, dt_bias, seqs, rec_max, S, d, out);
  }
  // the gated RMSNorm over each (token, head): one row of dv per head, gate z at z + t·ldz + h·dv
  rmsnorm_gated(out, z, ldz, norm_w, T, d.Hv, d.dv, d.eps, st, out_xfrag, in_pad);
}

}  // namespace hlwq::cuda
