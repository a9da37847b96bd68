// Chunked Gated DeltaNet kernels (see gdn_chunked.cuh).
// prep: one block of 256 threads per (value head, chunk, sequence); every array of the chunk in shared memory, the
// q·k and k·k products of the chunk on 2 × 2 register blocks.
// scan: one block of 256 threads per (value head, 16 columns of S, sequence); its S tile stays in shared memory
// across the sequence's chunks, each chunk's W, U, QK and G are staged into shared memory with coalesced loads,
// and its q and k are re-normalized from act (cheaper than storing them); the products run on register tiles. Both
// kernels stage q and k by 16-byte copies into rows of dk + 4 floats.
#include <cuda_pipeline.h>

#include <cstdint>
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

// Normalizes the chunk's q (× dk^-0.5) and k rows [0, L) in shared memory (rows ldq and ldk floats apart), a warp
// per token. The caller has copied the raw rows and waited for them (a barrier included).
__device__ void normalize_qk(int L, int dk, float* Q, int ldq, float* K, int ldk) {
  const int lane = threadIdx.x & 31;
  const float qscale = rsqrtf(float(dk));
  for (int i = threadIdx.x >> 5; i < L; i += blockDim.x >> 5) {
    float sq = 0.f, sk = 0.f;
    for (int a = lane; a < dk; a += 32) {
      const float qv = Q[i * ldq + a], kv = K[i * ldk + a];
      sq += qv * qv;
      sk += kv * kv;
    }
    sq = warp_sum(sq);
    sk = warp_sum(sk);
    const float rq = qscale * rsqrtf(sq + 1e-6f), rk = rsqrtf(sk + 1e-6f);
    for (int a = lane; a < dk; a += 32) {
      Q[i * ldq + a] *= rq;
      K[i * ldk + a] *= rk;
    }
  }
}

// Issues the 16-byte copies of the chunk's raw q and k rows [0, L) into Q and K (rows ld floats apart, ld % 4 == 0):
// all in flight at once (a load-then-use loop waits a full memory latency per element). The caller commits and
// waits for them, then calls normalize_qk.
__device__ void copy_qk(const float* act, int64_t tb, int L, int h, const GdnDimsDev& d, float* Q, float* K, int ld) {
  const int dk = d.dk, q4 = dk / 4, kh = h / (d.Hv / d.Hk), C = 2 * d.Hk * dk + d.Hv * d.dv;
  for (int e = threadIdx.x; e < L * q4; e += blockDim.x) {
    const int i = e / q4, a = 4 * (e - i * q4);
    const float* row = act + (tb + i) * C + kh * dk + a;
    __pipeline_memcpy_async(Q + i * ld + a, row, 16);
    __pipeline_memcpy_async(K + i * ld + a, row + d.Hk * dk, 16);
  }
}

__device__ __forceinline__ float dot4(const float4& a, const float4& b) {
  return a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
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
  extern __shared__ __align__(16) float sm[];
  const int ld = dk + 4;           // q and k rows: 16-byte aligned
  float* Qs = sm;                  // [L][ld]
  float* Ks = Qs + kL * ld;        // [L][ld]
  float* UW = Ks + kL * ld;        // [L][R]
  float* A = UW + kL * R;          // [L][L + 1]
  float* G = A + kL * (kL + 1);    // [L]
  float* B = G + kL;               // [L] β
  copy_qk(act, tb, L, h, d, Qs, Ks, ld);
  // the chunk's v rows into UW's first dv columns, in flight with q and k (a load-then-use loop over them waited a
  // full memory latency for each of its 32 rows)
  for (int e = tid; e < L * (dv / 4); e += blockDim.x) {
    const int i = e / (dv / 4), a = 4 * (e - i * (dv / 4));
    __pipeline_memcpy_async(UW + i * R + a, act + (tb + i) * C + 2 * d.Hk * dk + h * dv + a, 16);
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  __syncthreads();
  normalize_qk(L, dk, Qs, ld, Ks, ld);
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
  // A (strictly lower) and QK (lower with the diagonal), QK straight to the workspace, on 2 × 2 blocks of (i, j):
  // threads 0–135 take the 136 blocks on and below the diagonal (4 dims a 16-byte load, 8 dot products on 6 rows),
  // threads 136–255 write the zeros of the 120 above it
  static_assert(kL == 32 && kThreads == 256, "16 × 16 blocks of 2 × 2: 136 on or below the diagonal, 120 above");
  {
    const bool lower = tid < 136;
    int bi = 0, bj = 0;
    if (lower) {  // tid = bi (bi + 1) / 2 + bj, bj ≤ bi
      while ((bi + 1) * (bi + 2) / 2 <= tid) ++bi;
      bj = tid - bi * (bi + 1) / 2;
    } else {  // tid − 136 = p (p − 1) / 2 + q, q < p: block (q, p)
      const int u = tid - 136;
      int p = 1;
      while (p * (p + 1) / 2 <= u) ++p;
      bi = u - p * (p - 1) / 2;
      bj = p;
    }
    float kk[2][2] = {}, qk[2][2] = {};
    if (lower) {
      const float *ki = Ks + 2 * bi * ld, *qi = Qs + 2 * bi * ld, *kj = Ks + 2 * bj * ld;
      for (int x = 0; x < dk; x += 4) {
        const float4 k0 = *reinterpret_cast<const float4*>(ki + x), k1 = *reinterpret_cast<const float4*>(ki + ld + x);
        const float4 q0 = *reinterpret_cast<const float4*>(qi + x), q1 = *reinterpret_cast<const float4*>(qi + ld + x);
        const float4 j0 = *reinterpret_cast<const float4*>(kj + x), j1 = *reinterpret_cast<const float4*>(kj + ld + x);
        kk[0][0] += dot4(k0, j0), kk[0][1] += dot4(k0, j1), kk[1][0] += dot4(k1, j0), kk[1][1] += dot4(k1, j1);
        qk[0][0] += dot4(q0, j0), qk[0][1] += dot4(q0, j1), qk[1][0] += dot4(q1, j0), qk[1][1] += dot4(q1, j1);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
      for (int t = 0; t < 2; ++t) {
        const int i = 2 * bi + r, j = 2 * bj + t;
        float a = 0.f, q = 0.f;
        if (lower && i < L && j <= i) {
          const float dec = expf(G[i] - G[j]);
          if (j < i) a = B[i] * dec * kk[r][t];
          q = dec * qk[r][t];
        }
        A[i * (kL + 1) + j] = a;
        if (i < L) ws.qk[((tb + i) * d.Hv + h) * kL + j] = q;
      }
  }
  // [β v | β e^G k]
  for (int e = tid; e < L * R; e += blockDim.x) {
    const int i = e / R, col = e % R;
    UW[e] = col < dv ? B[i] * UW[e] : B[i] * expf(G[i]) * Ks[i * ld + col - dv];
  }
  __syncthreads();
  // forward substitution, row i −= Σ_{j<i} A[i][j] row j, column by column: a column is one thread's alone (its rows
  // j < i are final when row i reads them), so the rows need no barrier between them (31 did); A's entries are
  // broadcast reads. (The rows in registers instead took 188 registers a thread: one block an SM, not three.)
  for (int col = tid; col < R; col += blockDim.x) {
    for (int i = 1; i < L; ++i) {
      float acc = 0.f;
      for (int j = 0; j < i; ++j) acc += A[i * (kL + 1) + j] * UW[j * R + col];
      UW[i * R + col] -= acc;
    }
    for (int i = 0; i < L; ++i) ws.uw[((tb + i) * d.Hv + h) * R + col] = UW[i * R + col];
  }
  for (int i = tid; i < L; i += blockDim.x) ws.G[(tb + i) * d.Hv + h] = G[i];
}

// scan: the block's S tile [dk][16] lives in shared memory; each chunk is three small products on register tiles, so
// one shared-memory load feeds several FMAs, and every array of the chunk is staged by 16-byte copies:
//   P = [W; Q] · S   [2L × 16]: thread (rp, cp) = (tid / 8, tid % 8) owns rows 2rp, 2rp + 1 and columns 2cp, 2cp + 1;
//                    per 4 dims a row's W or Q is one 16-byte load, each dim's column pair of S one 8-byte load;
//                    warps 0–3 hold the W rows (→ u = U − W S), warps 4–7 the Q rows (→ o);
//   o = e^G ⊙ (Q S) + QK u   by the Q-row threads, from their registers;
//   S ← e^{G_L} S + Kᵀ (e^{G_L − G} ⊙ u)   [dk × 16]: thread (aq, cp) = (tid / 8, tid % 8) owns dims 4aq … 4aq + 3 and
//                    columns 2cp, 2cp + 1; the four dims of a key are one 16-byte load.
// Rows are dk + 4 floats apart: 16-byte aligned, and the 4 row pairs a warp reads at once fall in different banks.
static_assert(kThreads == 256 && kScanCols == 16 && kL == 32, "the register tiles below cover [64 × 16] and [128 × 16]");

__global__ void __launch_bounds__(kThreads) scan_kernel(const float* __restrict__ act, const GdnSeq* __restrict__ seqs,
                                                        int min_n, GdnDimsDev d, ChunkWs ws, float* S, float* out) {
  HLWQ_PDL_PREAMBLE();
  const int ntiles = (d.dv + kScanCols - 1) / kScanCols;
  const int h = blockIdx.x / ntiles, c0 = (blockIdx.x % ntiles) * kScanCols;
  const GdnSeq sq = seqs[blockIdx.y];
  if (sq.n < min_n) return;
  const int dk = d.dk, ld = dk + 4, q4 = dk / 4, dv = d.dv, R = dv + dk, nc = min(kScanCols, dv - c0), tid = threadIdx.x;
  const int rp = tid >> 3, cp = tid & 7, c = 2 * cp;  // P and o: rows 2rp, 2rp + 1; both phases: columns c, c + 1
  const bool w_rows = rp < kL / 2;                    // this thread's P rows are W rows (u), else Q rows (o)
  extern __shared__ __align__(16) float sm[];
  float* Ss = sm;                     // [dk][16] this block's columns of S
  float* WQ = Ss + dk * kScanCols;    // [2L][ld]: W (rows 0 … L−1), then q (rows L … 2L−1)
  float* Ks = WQ + 2 * kL * ld;       // [L][ld]
  float* Us = Ks + kL * ld;           // [L][16] U of the tile, then u
  float* Uc = Us + kL * kScanCols;    // [L][16] e^{G_L − G_j} u_j
  float* QK = Uc + kL * kScanCols;    // [L][L]
  float* G = QK + kL * kL;            // [L]
  float* Sg = S + (int64_t(sq.slot) * d.Hv + h) * dk * dv;
  for (int e = tid; e < dk * kScanCols; e += blockDim.x) {
    const int a = e / kScanCols, cc = e % kScanCols;
    Ss[e] = cc < nc ? Sg[int64_t(a) * dv + c0 + cc] : 0.f;
  }
  for (int cs = 0; cs < sq.n; cs += kL) {
    const int L = min(kL, sq.n - cs);
    const int64_t tb = sq.t0 + cs;
    __syncthreads();  // the previous chunk is done with every array
    // the chunk's W, q, k, U (this tile's columns, zeros past nc), QK and G, all in flight at once. Rows ≥ L keep the
    // previous chunk's values: their u is set to 0, their o is not written, and the S update stops at L.
    for (int e = tid; e < L * q4; e += blockDim.x) {
      const int i = e / q4, a = 4 * (e - i * q4);
      __pipeline_memcpy_async(WQ + i * ld + a, ws.uw + ((tb + i) * d.Hv + h) * R + dv + a, 16);
    }
    copy_qk(act, tb, L, h, d, WQ + kL * ld, Ks, ld);
    for (int e = tid; e < L * (kScanCols / 4); e += blockDim.x) {
      const int i = e / (kScanCols / 4), cc = 4 * (e % (kScanCols / 4));
      const float* src = ws.uw + ((tb + i) * d.Hv + h) * R + c0 + cc;
      __pipeline_memcpy_async(Us + i * kScanCols + cc, cc < nc ? src : ws.uw, 16, cc < nc ? 0 : 16);
    }
    for (int e = tid; e < L * (kL / 4); e += blockDim.x) {
      const int i = e / (kL / 4), j = 4 * (e % (kL / 4));
      __pipeline_memcpy_async(QK + i * kL + j, ws.qk + ((tb + i) * d.Hv + h) * kL + j, 16);
    }
    for (int i = tid; i < L; i += blockDim.x) __pipeline_memcpy_async(G + i, ws.G + (tb + i) * d.Hv + h, sizeof(float));
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncthreads();
    normalize_qk(L, dk, WQ + kL * ld, ld, Ks, ld);
    __syncthreads();
    // P: rows 2rp, 2rp + 1 of [W; q] times columns c, c + 1 of S
    float p[2][2] = {};
    const float* w0 = WQ + 2 * rp * ld;
    for (int a = 0; a < dk; a += 4) {
      const float4 x0 = *reinterpret_cast<const float4*>(w0 + a), x1 = *reinterpret_cast<const float4*>(w0 + ld + a);
      const float r0[4] = {x0.x, x0.y, x0.z, x0.w}, r1[4] = {x1.x, x1.y, x1.z, x1.w};
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        const float2 sv = *reinterpret_cast<const float2*>(Ss + (a + x) * kScanCols + c);
        p[0][0] += r0[x] * sv.x;
        p[0][1] += r0[x] * sv.y;
        p[1][0] += r1[x] * sv.x;
        p[1][1] += r1[x] * sv.y;
      }
    }
    const float GL = G[L - 1];
    if (w_rows) {  // u = U − W S, and e^{G_L − G_i} u for the S update (0 for rows ≥ L and columns ≥ nc)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = 2 * rp + r;
        const float f = i < L ? expf(GL - G[i]) : 0.f;
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const float u = (i < L && c + k < nc) ? Us[i * kScanCols + c + k] - p[r][k] : 0.f;
          Us[i * kScanCols + c + k] = u;
          Uc[i * kScanCols + c + k] = f * u;
        }
      }
    }
    __syncthreads();  // u complete
    if (!w_rows) {  // o = e^G (Q S) + QK u, rows i = 2rp − L + r
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int i = 2 * rp - kL + r;
        if (i >= L) continue;
        float o0 = p[r][0] * expf(G[i]), o1 = p[r][1] * expf(G[i]);
        for (int j = 0; j <= i; ++j) {
          const float q = QK[i * kL + j];
          const float2 u = *reinterpret_cast<const float2*>(Us + j * kScanCols + c);
          o0 += q * u.x;
          o1 += q * u.y;
        }
        float* o = out + (tb + i) * int64_t(d.Hv) * dv + int64_t(h) * dv + c0 + c;
        if (c < nc) o[0] = o0;
        if (c + 1 < nc) o[1] = o1;
      }
    }
    // S ← e^{G_L} S + Σ_j k_j (e^{G_L − G_j} u_j)ᵀ on dims 4rp … 4rp + 3 (this thread's own entries: no other thread
    // reads them before the next chunk's barrier)
    const float eL = expf(GL);
    const int a0 = 4 * rp;
    if (a0 < dk) {
      float sa[4][2] = {};
      for (int j = 0; j < L; ++j) {
        const float4 k4 = *reinterpret_cast<const float4*>(Ks + j * ld + a0);
        const float2 u = *reinterpret_cast<const float2*>(Uc + j * kScanCols + c);
        const float kk[4] = {k4.x, k4.y, k4.z, k4.w};
#pragma unroll
        for (int x = 0; x < 4; ++x) sa[x][0] += kk[x] * u.x, sa[x][1] += kk[x] * u.y;
      }
#pragma unroll
      for (int x = 0; x < 4; ++x) {
        float2* sp = reinterpret_cast<float2*>(Ss + (a0 + x) * kScanCols + c);
        const float2 sv = *sp;
        *sp = make_float2(eL * sv.x + sa[x][0], eL * sv.y + sa[x][1]);
      }
    }
  }
  __syncthreads();
  for (int e = tid; e < dk * kScanCols; e += blockDim.x) {
    const int a = e / kScanCols, cc = e % kScanCols;
    if (cc < nc) Sg[int64_t(a) * dv + c0 + cc] = Ss[e];
  }
}

size_t prep_smem(const GdnDimsDev& d) {
  return sizeof(float) * size_t(2 * kL * (d.dk + 4) + kL * (d.dv + d.dk) + kL * (kL + 1) + 2 * kL);
}
size_t scan_smem(const GdnDimsDev& d) {
  return sizeof(float) * size_t(d.dk * kScanCols + 3 * kL * (d.dk + 4) + 2 * kL * kScanCols + kL * kL + kL);
}

}  // namespace

int64_t gdn_chunked_workspace_floats(int64_t T, const GdnDimsDev& d) {
  return T * d.Hv * (int64_t(d.dv) + d.dk + kL + 1);
}

bool gdn_chunked_fits(const GdnDimsDev& d, int device) {
  int optin = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
                  "device {} shared memory", device);
  // the scan's tiles and copies: dims and value columns in 16-byte quads, at most 128 dims (32 quads × 8 column
  // pairs = its 256 threads)
  return d.dk % 4 == 0 && d.dk <= 128 && d.dv % 4 == 0 && prep_smem(d) <= size_t(optin) && scan_smem(d) <= size_t(optin);
}

void gdn_chunked(const float* act, const float* ba, int64_t ldba, const float* A_log, const float* dt_bias,
                 const GdnSeq* seqs, int n_seq, int min_n, int max_n, float* S, const GdnDimsDev& d, float* ws,
                 int64_t T, float* out, cudaStream_t st) {
  HLWQ_CHECK(d.Hv % d.Hk == 0 && min_n >= 1, "gdn_chunked: Hk {} Hv {} min_n {}", d.Hk, d.Hv, min_n);
  HLWQ_CHECK(reinterpret_cast<uintptr_t>(act) % 16 == 0 && reinterpret_cast<uintptr_t>(ws) % 16 == 0,
             "gdn_chunked: act and the workspace must be 16-byte aligned (the chunks are staged by 16-byte copies)");
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
