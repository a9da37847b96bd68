// Chunked Gated DeltaNet kernels (see gdn_chunked.cuh).
// prep: one block of 256 threads per (value head, chunk, sequence); every array of the chunk in shared memory.
// scan: one block of 256 threads per (value head, 16 columns of S, sequence); its S tile stays in shared memory
// across the sequence's chunks, each chunk's W, U, QK and G are staged into shared memory with coalesced loads,
// and its q and k are re-normalized from act (cheaper than storing them).
#include <cuda_pipeline.h>

#include <climits>
#include <cmath>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/gdn_chunked.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kL = kGdnChunkDev;
constexpr int kThreads = 256;
// Columns of S per scan block: 16 gives Hv · dv / 16 blocks (256 for Qwen3.6: two an SM of the H200, where 32 columns
// left one block of 8 warps an SM to wait out each chunk's loads and barriers alone).
constexpr int kScanCols = 16;

__device__ __forceinline__ float softplus_f(float x) { return x > 20.f ? x : log1pf(expf(x)); }

// Workspace rows of (batch row t, value head h).
struct ChunkWs {
  float *uw, *qk, *G;  // [T, Hv, R], [T, Hv, L], [T, Hv]
};

// Normalized q (× dk^-0.5) and k of the chunk's tokens [0, L) into Qs/Ks [L][dk + 1]. The raw rows are copied
// with cp.async, all in flight at once (a load-then-use loop waits a full memory latency per element, and the
// scan pays that once per chunk on its critical path); then a warp per token normalizes from shared memory.
__device__ void load_qk(const float* act, int64_t tb, int L, int h, const GdnDimsDev& d, float* Qs, float* Ks) {
  const int dk = d.dk, kh = h / (d.Hv / d.Hk), C = 2 * d.Hk * dk + d.Hv * d.dv, lane = threadIdx.x & 31;
  for (int e = threadIdx.x; e < L * dk; e += blockDim.x) {
    const int i = e / dk, a = e % dk;
    const float* row = act + (tb + i) * C;
    __pipeline_memcpy_async(Qs + i * (dk + 1) + a, row + kh * dk + a, sizeof(float));
    __pipeline_memcpy_async(Ks + i * (dk + 1) + a, row + d.Hk * dk + kh * dk + a, sizeof(float));
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  const float qscale = rsqrtf(float(dk));
  for (int i = threadIdx.x >> 5; i < L; i += blockDim.x >> 5) {
    float sq = 0.f, sk = 0.f;
    for (int a = lane; a < dk; a += 32) {
      const float qv = Qs[i * (dk + 1) + a], kv = Ks[i * (dk + 1) + a];
      sq += qv * qv;
      sk += kv * kv;
    }
    sq = warp_sum(sq);
    sk = warp_sum(sk);
    const float rq = qscale * rsqrtf(sq + 1e-6f), rk = rsqrtf(sk + 1e-6f);
    for (int a = lane; a < dk; a += 32) {
      Qs[i * (dk + 1) + a] *= rq;
      Ks[i * (dk + 1) + a] *= rk;
    }
  }
}

__global__ void __launch_bounds__(kThreads) prep_kernel(const float* __restrict__ act, const float* __restrict__ ba,
                                                        int64_t ldba, const float* __restrict__ A_log,
                                                        const float* __restrict__ dt_bias,
                                                        const GdnSeq* __restrict__ seqs, int min_n, GdnDimsDev d,
                                                        ChunkWs ws) {
  HLWQ_PDL_PREAMBLE();
  const GdnSeq sq = seqs[blockIdx.z];
  const int h = blockIdx.x, c = blockIdx.y;
  if (sq.n < min_n || c * kL >= sq.n) return;
  const int L = min(kL, sq.n - c * kL), dk = d.dk, dv = d.dv, R = dv + dk, C = 2 * d.Hk * dk + d.Hv * dv, tid = threadIdx.x;
  const int64_t tb = sq.t0 + int64_t(c) * kL;  // batch row of the chunk's first token
  extern __shared__ float sm[];
  float* Qs = sm;                  // [L][dk + 1]
  float* Ks = Qs + kL * (dk + 1);  // [L][dk + 1]
  float* UW = Ks + kL * (dk + 1);  // [L][R]
  float* A = UW + kL * R;          // [L][L + 1]
  float* G = A + kL * (kL + 1);    // [L]
  float* B = G + kL;               // [L] β
  load_qk(act, tb, L, h, d, Qs, Ks);
  const float Aneg = -expf(A_log[h]);
  for (int i = tid; i < L; i += blockDim.x) {
    const float* bar = ba + (tb + i) * ldba;
    B[i] = 1.f / (1.f + expf(-bar[h]));
    G[i] = Aneg * softplus_f(bar[d.Hv + h] + dt_bias[h]);
  }
  __syncthreads();
  if (tid == 0) {
    float acc = 0.f;
    for (int i = 0; i < L; ++i) G[i] = acc += G[i];
  }
  __syncthreads();
  // A (strictly lower) and QK (lower with the diagonal), QK straight to the workspace
  for (int e = tid; e < kL * kL; e += blockDim.x) {
    const int i = e / kL, j = e % kL;
    float a = 0.f, q = 0.f;
    if (i < L && j <= i) {
      const float *ki = Ks + i * (dk + 1), *kj = Ks + j * (dk + 1), *qi = Qs + i * (dk + 1);
      float kk = 0.f, qk = 0.f;
      for (int x = 0; x < dk; ++x) {
        kk += ki[x] * kj[x];
        qk += qi[x] * kj[x];
      }
      const float dec = expf(G[i] - G[j]);
      if (j < i) a = B[i] * dec * kk;
      q = dec * qk;
    }
    A[i * (kL + 1) + j] = a;
    if (i < L) ws.qk[((tb + i) * d.Hv + h) * kL + j] = q;
  }
  // [β v | β e^G k]
  for (int e = tid; e < L * R; e += blockDim.x) {
    const int i = e / R, col = e % R;
    UW[e] = col < dv ? B[i] * act[(tb + i) * C + 2 * d.Hk * dk + h * dv + col]
                     : B[i] * expf(G[i]) * Ks[i * (dk + 1) + col - dv];
  }
  __syncthreads();
  // forward substitution: row i −= Σ_{j<i} A[i][j] row j (rows j < i final)
  for (int i = 1; i < L; ++i) {
    for (int col = tid; col < R; col += blockDim.x) {
      float acc = 0.f;
      for (int j = 0; j < i; ++j) acc += A[i * (kL + 1) + j] * UW[j * R + col];
      UW[i * R + col] -= acc;
    }
    __syncthreads();
  }
  for (int e = tid; e < L * R; e += blockDim.x) {
    const int i = e / R, col = e % R;
    ws.uw[((tb + i) * d.Hv + h) * R + col] = UW[e];
  }
  for (int i = tid; i < L; i += blockDim.x) ws.G[(tb + i) * d.Hv + h] = G[i];
}

// scan: thread (row group w, column c) owns column c of the tile and rows w, w + kRowGroups, … of every
// [rows, kScanCols] product, so each shared-memory read of S feeds several FMAs and the row operands (W, q, k, QK)
// are broadcasts (a warp spans two row groups: two addresses, one row apart, in different banks).
constexpr int kRowGroups = kThreads / kScanCols;
constexpr int kRowsU = kL / kRowGroups;        // rows of u and o per thread
constexpr int kMaxRowsS = 128 / kRowGroups;    // rows of S per thread (dk ≤ 128)

__global__ void __launch_bounds__(kThreads) scan_kernel(const float* __restrict__ act, const GdnSeq* __restrict__ seqs,
                                                        int min_n, GdnDimsDev d, ChunkWs ws, float* S, float* out) {
  HLWQ_PDL_PREAMBLE();
  static_assert(32 % kScanCols == 0 && kL % kRowGroups == 0, "whole row groups per warp, whole rows per group");
  const int ntiles = (d.dv + kScanCols - 1) / kScanCols;
  const int h = blockIdx.x / ntiles, c0 = (blockIdx.x % ntiles) * kScanCols;
  const GdnSeq sq = seqs[blockIdx.y];
  if (sq.n < min_n) return;
  const int dk = d.dk, dv = d.dv, R = dv + dk, nc = min(kScanCols, dv - c0), tid = threadIdx.x;
  const int c = tid % kScanCols, w = tid / kScanCols;
  extern __shared__ float sm[];
  float* Ss = sm;                         // [dk][32] this block's columns of S
  float* Qs = Ss + dk * kScanCols;        // [L][dk + 1]
  float* Ks = Qs + kL * (dk + 1);         // [L][dk + 1]
  float* Ws = Ks + kL * (dk + 1);         // [L][dk + 1] W of the chunk
  float* Us = Ws + kL * (dk + 1);         // [L][32] U of the tile, then u
  float* QK = Us + kL * kScanCols;        // [L][L]
  float* G = QK + kL * kL;                // [L]
  float* coef = G + kL;                   // [L] e^{G_L − G_j}
  float* Sg = S + (int64_t(sq.slot) * d.Hv + h) * dk * dv;
  for (int e = tid; e < dk * kScanCols; e += blockDim.x) {
    const int a = e / kScanCols, cc = e % kScanCols;
    Ss[e] = cc < nc ? Sg[int64_t(a) * dv + c0 + cc] : 0.f;
  }
  for (int cs = 0; cs < sq.n; cs += kL) {
    const int L = min(kL, sq.n - cs);
    const int64_t tb = sq.t0 + cs;
    __syncthreads();  // the previous chunk is done with every array
    // the chunk's W, U (this tile's columns), QK and G, copied asynchronously (rows of W are contiguous), while
    // load_qk's copies are in flight too; load_qk waits for all of them
    for (int e = tid; e < L * dk; e += blockDim.x) {
      const int i = e / dk, a = e % dk;
      __pipeline_memcpy_async(Ws + i * (dk + 1) + a, ws.uw + ((tb + i) * d.Hv + h) * R + dv + a, sizeof(float));
    }
    for (int e = tid; e < L * kScanCols; e += blockDim.x) {
      const int i = e / kScanCols, cc = e % kScanCols;
      if (cc < nc) __pipeline_memcpy_async(Us + e, ws.uw + ((tb + i) * d.Hv + h) * R + c0 + cc, sizeof(float));
      else Us[e] = 0.f;
    }
    for (int e = tid; e < L * kL; e += blockDim.x)
      __pipeline_memcpy_async(QK + e, ws.qk + ((tb + e / kL) * d.Hv + h) * kL + e % kL, sizeof(float));
    for (int i = tid; i < L; i += blockDim.x) __pipeline_memcpy_async(G + i, ws.G + (tb + i) * d.Hv + h, sizeof(float));
    load_qk(act, tb, L, h, d, Qs, Ks);
    __syncthreads();
    for (int j = tid; j < L; j += blockDim.x) coef[j] = expf(G[L - 1] - G[j]);
    // u = U − W S and Q S, rows w + 8r
    float ws_[kRowsU] = {}, qs_[kRowsU] = {};
    for (int a = 0; a < dk; ++a) {
      const float sv = Ss[a * kScanCols + c];
#pragma unroll
      for (int r = 0; r < kRowsU; ++r) {
        const int i = w + kRowGroups * r;
        ws_[r] += Ws[i * (dk + 1) + a] * sv;
        qs_[r] += Qs[i * (dk + 1) + a] * sv;
      }
    }
#pragma unroll
    for (int r = 0; r < kRowsU; ++r) {
      const int i = w + kRowGroups * r;
      Us[i * kScanCols + c] = (i < L && c < nc) ? Us[i * kScanCols + c] - ws_[r] : 0.f;
    }
    __syncthreads();  // u complete
    // o = e^G (Q S) + QK u
#pragma unroll
    for (int r = 0; r < kRowsU; ++r) {
      const int i = w + kRowGroups * r;
      if (i >= L || c >= nc) continue;
      float acc = qs_[r] * expf(G[i]);
      for (int j = 0; j <= i; ++j) acc += QK[i * kL + j] * Us[j * kScanCols + c];
      out[(tb + i) * int64_t(d.Hv) * dv + int64_t(h) * dv + c0 + c] = acc;
    }
    // S ← e^{G_L} S + Σ_j e^{G_L − G_j} k_j u_jᵀ (this thread's own entries of S: no other thread reads them
    // before the next chunk's barrier)
    const float eL = expf(G[L - 1]);
    float sa[kMaxRowsS] = {};
    for (int j = 0; j < L; ++j) {
      const float u = coef[j] * Us[j * kScanCols + c];
#pragma unroll
      for (int r = 0; r < kMaxRowsS; ++r) {
        const int a = w + kRowGroups * r;
        if (a < dk) sa[r] += Ks[j * (dk + 1) + a] * u;
      }
    }
#pragma unroll
    for (int r = 0; r < kMaxRowsS; ++r) {
      const int a = w + kRowGroups * r;
      if (a < dk) Ss[a * kScanCols + c] = eL * Ss[a * kScanCols + c] + sa[r];
    }
  }
  __syncthreads();
  for (int e = tid; e < dk * kScanCols; e += blockDim.x) {
    const int a = e / kScanCols, cc = e % kScanCols;
    if (cc < nc) Sg[int64_t(a) * dv + c0 + cc] = Ss[e];
  }
}

size_t prep_smem(const GdnDimsDev& d) {
  return sizeof(float) * size_t(2 * kL * (d.dk + 1) + kL * (d.dv + d.dk) + kL * (kL + 1) + 2 * kL);
}
size_t scan_smem(const GdnDimsDev& d) {
  return sizeof(float) * size_t(d.dk * kScanCols + 3 * kL * (d.dk + 1) + kL * kScanCols + kL * kL + 2 * kL);
}

}  // namespace

int64_t gdn_chunked_workspace_floats(int64_t T, const GdnDimsDev& d) {
  return T * d.Hv * (int64_t(d.dv) + d.dk + kL + 1);
}

bool gdn_chunked_fits(const GdnDimsDev& d, int device) {
  int optin = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                  "device {} shared memory", device);
  return prep_smem(d) <= size_t(optin) && scan_smem(d) <= size_t(optin);
}

void gdn_chunked(const float* act, const float* ba, int64_t ldba, const float* A_log, const float* dt_bias,
                 const GdnSeq* seqs, int n_seq, int min_n, int max_n, float* S, const GdnDimsDev& d, float* ws,
                 int64_t T, float* out, cudaStream_t st) {
  HLWQ_CHECK(d.Hv % d.Hk == 0 && min_n >= 1, "gdn_chunked: Hk {} Hv {} min_n {}", d.Hk, d.Hv, min_n);
  if (n_seq == 0 || max_n < min_n) return;
  const ChunkWs w{ws, ws + T * d.Hv * (d.dv + d.dk), ws + T * d.Hv * (d.dv + d.dk + kL)};
  const size_t ps = prep_smem(d), ss = scan_smem(d);
  // above 48 KB a kernel must opt in; the sizes depend only on the head dims, so this is the same every call
  HLWQ_CUDA_CHECK(cudaFuncSetAttribute(prep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(ps)),
                  "gdn_chunked: {} bytes of shared memory for prep", ps);
  HLWQ_CUDA_CHECK(cudaFuncSetAttribute(scan_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(ss)),
                  "gdn_chunked: {} bytes of shared memory for scan", ss);
  const dim3 pg(unsigned(d.Hv), unsigned((max_n + kL - 1) / kL), unsigned(n_seq));
  prep_kernel<<<pg, kThreads, ps, st>>>(act, ba, ldba, A_log, dt_bias, seqs, min_n, d, w);
  HLWQ_CUDA_LAUNCH_CHECK("gdn_chunked prep {} heads, {} chunks, {} sequences", d.Hv, pg.y, n_seq);
  const dim3 sg(unsigned(d.Hv * ((d.dv + kScanCols - 1) / kScanCols)), unsigned(n_seq));
  scan_kernel<<<sg, kThreads, ss, st>>>(act, seqs, min_n, d, w, S, out);
  HLWQ_CUDA_LAUNCH_CHECK("gdn_chunked scan {} heads, {} sequences", d.Hv, n_seq);
}

}  // namespace hlwq::cuda
