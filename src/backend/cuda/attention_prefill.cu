// Prefill attention on the tensor cores (see attention_prefill.cuh).
// Fragment layouts are mma.m16n8k16's (mma.cuh, weight_pack.h): lane (g = lane / 4, c = lane % 4) holds A rows g and
// g + 8 at k 2c, 2c + 1 (+8), B column g at k 2c, 2c + 1 (+8), C rows g and g + 8 at columns 2c, 2c + 1.
#include "backend/cuda/attention_prefill.cuh"

#include <cuda_bf16.h>
#include <cuda_pipeline.h>

#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarps = 4;       // row tiles of a block, sharing its K/V tiles
constexpr int kKeys = 16;  // keys of a K/V tile, one k-step of P·V (two buffers and q's two parts fit two blocks an SM)
constexpr int kMaxRep = 8;      // query heads per kv head a row tile can hold with ≥ 2 tokens

// Shared memory rows are D + 8 bf16 long: consecutive rows 16 bytes apart modulo 128, so the 8 row addresses of an
// ldmatrix land in 8 different bank groups.
__host__ __device__ constexpr int row_stride(int D) { return D + 8; }
size_t smem_bytes(int D) { return size_t(2 * kWarps * 16 + 4 * kKeys) * size_t(row_stride(D)) * sizeof(__nv_bfloat16); }

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
// Four 8×8 bf16 matrices; thread i gives the address of row i % 8 of matrix i / 8, register j holds matrix j.
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// The same, each matrix transposed: thread (g, c) gets rows 2c, 2c + 1 of column g.
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const __nv_bfloat16* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

// Block (x, kv head y): tokens [tiles[2x], tiles[2x + 1]) of one sequence (the plan puts the blocks with the most
// keys first). rp_log2: log2 RP.
template <int D>
__global__ void __launch_bounds__(kWarps * 32, 2)
    attend_prefill_kernel(const float* __restrict__ qg, int64_t ldq, const int* __restrict__ pos,
                          const int* __restrict__ bt_off, const int* __restrict__ bt,
                          const __nv_bfloat16* __restrict__ k_pages, const __nv_bfloat16* __restrict__ v_pages,
                          const int* __restrict__ tiles, AttnDimsDev d, int rp_log2, float* out) {
  HLWQ_PDL_PREAMBLE();
  constexpr int S = row_stride(D);
  // q's high and low bf16 parts [2][kWarps · 16][S], then two buffers of K, V [kKeys][S]
  extern __shared__ __align__(16) __nv_bfloat16 smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int tpw = 16 >> rp_log2, rep = d.Hq / d.Hkv, hk = blockIdx.y;
  const int t0 = tiles[2 * blockIdx.x], T = tiles[2 * blockIdx.x + 1], tw = t0 + warp * tpw;  // T: the block's end
  const int t_last = T - 1;
  const int nk = pos[t_last] + 1;  // positions increase with t: the block's last token sees the most keys
  const int w_last = min(T - 1, tw + tpw - 1);
  const int w_keys = w_last >= tw ? pos[w_last] + 1 : 0;  // keys any row of this warp sees
  const int* btt = bt + bt_off[t0];

  // Row r of the warp's tile: token tw + r / RP, query head hk · rep + r % RP (padding where that is ≥ rep or the
  // token ≥ T: zero q, results not written). This lane's rows g and g + 8 and the last key each may see.
  int rpos[2];
  bool rvalid[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = g + 8 * h, t = tw + (r >> rp_log2);
    rvalid[h] = t < T && (r & ((1 << rp_log2) - 1)) < rep;
    rpos[h] = pos[min(t, t_last)];
  }
  // q · log2(e) / √D (scores come out in the log2 domain: exp2 below) as two bf16 parts, hi + lo (the header says why)
  __nv_bfloat16* Qh = smem + warp * 16 * S;
  __nv_bfloat16* Ql = Qh + kWarps * 16 * S;
  const float qscale = rsqrtf(float(D)) * 1.4426950408889634f;
  for (int i = lane; i < 16 * D / 2; i += 32) {
    const int r = i / (D / 2), dd = 2 * (i % (D / 2)), t = tw + (r >> rp_log2), h = r & ((1 << rp_log2) - 1);
    float2 v = make_float2(0.f, 0.f);
    if (t < T && h < rep) v = *reinterpret_cast<const float2*>(qg + int64_t(t) * ldq + int64_t(hk * rep + h) * 2 * D + dd);
    const float x = v.x * qscale, y = v.y * qscale;
    const __nv_bfloat162 hi = __floats2bfloat162_rn(x, y);
    *reinterpret_cast<__nv_bfloat162*>(Qh + r * S + dd) = hi;
    *reinterpret_cast<uint32_t*>(Ql + r * S + dd) = pack_bf16(x - __low2float(hi), y - __high2float(hi));
  }

  __nv_bfloat16* KV = smem + 2 * kWarps * 16 * S;
  auto load_tile = [&](int kt, int buf) {  // keys [kt, kt + kKeys) into buffer buf; keys ≥ nk zero-filled
    __nv_bfloat16* Ks = KV + buf * 2 * kKeys * S;
    constexpr int kChunks = D / 8;  // 16 bytes each
    for (int i = threadIdx.x; i < kKeys * kChunks; i += blockDim.x) {
      const int j = i / kChunks, ch = i % kChunks, p = kt + j, pp = p < nk ? p : kt;
      const int64_t at = ((int64_t(btt[pp / kAttnPageTokens]) * kAttnPageTokens + pp % kAttnPageTokens) * d.Hkv + hk) * D +
                         ch * 8;
      const size_t zfill = p < nk ? 0 : 16;
      __pipeline_memcpy_async(Ks + j * S + ch * 8, k_pages + at, 16, zfill);
      __pipeline_memcpy_async(Ks + (kKeys + j) * S + ch * 8, v_pages + at, 16, zfill);
    }
  };

  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this lane's columns only (summed over the quad last)
  load_tile(0, 0);
  __pipeline_commit();
  int buf = 0;
  for (int kt = 0; kt < nk; kt += kKeys, buf ^= 1) {
    if (kt + kKeys < nk) load_tile(kt + kKeys, buf ^ 1);
    __pipeline_commit();
    __pipeline_wait_prior(1);  // this tile's copies (and the Q stores, by the barrier)
    __syncthreads();
    if (kt < w_keys) {
      const __nv_bfloat16* Ks = KV + buf * 2 * kKeys * S;
      const __nv_bfloat16* Vs = Ks + kKeys * S;
      float s[kKeys / 8][4] = {};  // S = Q Kᵀ: 16 rows × 32 keys
#pragma unroll
      for (int kd = 0; kd < D / 16; kd += 2) {
        uint32_t a[2][2][4];  // [step kd, kd + 1][hi, lo]
        const int qr = (lane & 7) + 8 * ((lane >> 3) & 1);
#pragma unroll
        for (int st = 0; st < 2; ++st) {
          ldsm_x4(a[st][0], Qh + qr * S + 16 * (kd + st) + 8 * (lane >> 4));
          ldsm_x4(a[st][1], Ql + qr * S + 16 * (kd + st) + 8 * (lane >> 4));
        }
#pragma unroll
        for (int jk = 0; jk < kKeys / 8; ++jk) {
          uint32_t b[4];  // keys 8jk.., dims 16kd + 0, 8, 16, 24: b0, b1 of step kd, then of kd + 1
          ldsm_x4(b, Ks + (8 * jk + (lane & 7)) * S + 16 * kd + 8 * (lane >> 3));
#pragma unroll
          for (int st = 0; st < 2; ++st)
#pragma unroll
            for (int part = 0; part < 2; ++part)
              mma_bf16(s[jk], a[st][part][0], a[st][part][1], a[st][part][2], a[st][part][3], b[2 * st],
                       b[2 * st + 1]);
        }
      }
      // causal mask and the running max of rows g (h = 0) and g + 8 (h = 1)
      float mx[2] = {m[0], m[1]};
#pragma unroll
      for (int jk = 0; jk < kKeys / 8; ++jk)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (kt + 8 * jk + 2 * c + (e & 1) > rpos[e >> 1]) s[jk][e] = -INFINITY;
          mx[e >> 1] = fmaxf(mx[e >> 1], s[jk][e]);
        }
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 1));
        mx[h] = fmaxf(mx[h], __shfl_xor_sync(0xffffffffu, mx[h], 2));
        // every row sees key 0 in the first tile, so mx is finite from then on
        const float corr = exp2f(m[h] - mx[h]);
        m[h] = mx[h];
        l[h] *= corr;
#pragma unroll
        for (int jd = 0; jd < D / 8; ++jd) o[jd][2 * h] *= corr, o[jd][2 * h + 1] *= corr;
      }
      // P as the A fragments of the 16-key step (a0/a1 from key tile 0, a2/a3 from 1), in hi + lo bf16 parts as q
      uint32_t pa[2][4];  // [hi, lo]
#pragma unroll
      for (int jk = 0; jk < kKeys / 8; ++jk) {
        const float p[4] = {exp2f(s[jk][0] - m[0]), exp2f(s[jk][1] - m[0]), exp2f(s[jk][2] - m[1]),
                            exp2f(s[jk][3] - m[1])};
        l[0] += p[0] + p[1];
        l[1] += p[2] + p[3];
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const __nv_bfloat162 hi = __floats2bfloat162_rn(p[2 * h], p[2 * h + 1]);
          pa[0][jk * 2 + h] = *reinterpret_cast<const uint32_t*>(&hi);
          pa[1][jk * 2 + h] = pack_bf16(p[2 * h] - __low2float(hi), p[2 * h + 1] - __high2float(hi));
        }
      }
#pragma unroll
      for (int jd = 0; jd < D / 8; jd += 2) {
        uint32_t b[4];  // keys 0 / 8, dims 8jd / 8jd + 8: b0, b1 of dim tile jd, then of jd + 1
        ldsm_x4_trans(b, Vs + ((lane & 7) + 8 * ((lane >> 3) & 1)) * S + 8 * jd + 8 * (lane >> 4));
#pragma unroll
        for (int part = 0; part < 2; ++part) {
          mma_bf16(o[jd], pa[part][0], pa[part][1], pa[part][2], pa[part][3], b[0], b[1]);
          mma_bf16(o[jd + 1], pa[part][0], pa[part][1], pa[part][2], pa[part][3], b[2], b[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's copies overwrite this buffer
  }

#pragma unroll
  for (int h = 0; h < 2; ++h) {
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 1);
    l[h] += __shfl_xor_sync(0xffffffffu, l[h], 2);
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    if (!rvalid[h]) continue;
    const int r = g + 8 * h, t = tw + (r >> rp_log2), hq = hk * rep + (r & ((1 << rp_log2) - 1));
    const float inv = 1.f / l[h];
    const float* gate = qg + int64_t(t) * ldq + int64_t(hq) * 2 * D + D;
    float* row = out + (int64_t(t) * d.Hq + hq) * D;
#pragma unroll
    for (int jd = 0; jd < D / 8; ++jd)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int i = 8 * jd + 2 * c + e;
        row[i] = o[jd][2 * h + e] * inv * (1.f / (1.f + expf(-gate[i])));
      }
  }
}

int rp_log2_of(int rep) {
  int b = 0;
  while ((1 << b) < rep) ++b;
  return b;
}

}  // namespace

bool attend_prefill_supported(const AttnDimsDev& d) {
  if (d.Hkv <= 0 || d.Hq % d.Hkv != 0 || d.Hq / d.Hkv > kMaxRep || (d.D != 64 && d.D != 128 && d.D != 256)) return false;
  int dev = 0, optin = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "attend_prefill: current device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev),
                  "attend_prefill: shared memory opt-in limit of device {}", dev);
  return smem_bytes(d.D) <= size_t(optin);
}

int64_t attend_prefill_block_tokens(const AttnDimsDev& d) { return kWarps * (16 >> rp_log2_of(d.Hq / d.Hkv)); }

void attend_prefill(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt,
                    const uint16_t* k_pages, const uint16_t* v_pages, const int* tiles, int64_t n_tiles,
                    const AttnDimsDev& d, float* out, cudaStream_t st) {
  HLWQ_CHECK(attend_prefill_supported(d), "attend_prefill: {} q heads over {} kv heads, D {} (shared memory {} bytes)",
             d.Hq, d.Hkv, d.D, smem_bytes(d.D));
  HLWQ_CHECK(ldq % 2 == 0 && reinterpret_cast<uintptr_t>(qg) % 8 == 0, "attend_prefill: q rows must be 8-byte aligned");
  if (n_tiles == 0) return;
  const int lg = rp_log2_of(d.Hq / d.Hkv);
  const dim3 grid(unsigned(n_tiles), unsigned(d.Hkv));
  const size_t smem = smem_bytes(d.D);
  auto kp = reinterpret_cast<const __nv_bfloat16*>(k_pages);
  auto vp = reinterpret_cast<const __nv_bfloat16*>(v_pages);
  switch (d.D) {
#define HLWQ_ATTEND_PREFILL_CASE(DD)                                                                                  \
  case DD:                                                                                                            \
    HLWQ_CUDA_CHECK(cudaFuncSetAttribute(attend_prefill_kernel<DD>, cudaFuncAttributeMaxDynamicSharedMemorySize,     \
                                         int(smem)),                                                                  \
                    "attend_prefill: {} bytes of shared memory", smem);                                             \
    attend_prefill_kernel<DD><<<grid, kWarps * 32, smem, st>>>(qg, ldq, pos, bt_off, bt, kp, vp, tiles, d, lg, out); \
    HLWQ_CUDA_LAUNCH_CHECK("attend_prefill {} blocks, {} kv heads, D {}", n_tiles, d.Hkv, d.D);                       \
    break;
    HLWQ_ATTEND_PREFILL_CASE(64)
    HLWQ_ATTEND_PREFILL_CASE(128)
    HLWQ_ATTEND_PREFILL_CASE(256)
#undef HLWQ_ATTEND_PREFILL_CASE
    default: hlwq::fail("attend_prefill: head_dim {}", d.D);
  }
}

}  // namespace hlwq::cuda
