// Attention kernels (see attention.cuh).
// attend: one block per (token, kv head, key split) serving all Hq/Hkv query heads of the group, so each cached
// K/V row is read from memory once per group; decode splits the keys over up to 32 blocks (flash-decoding) and a
// second kernel merges the splits. 8 warps: 4 split the keys times 2 halves of the heads (the two warps of a key read
// its row, the second from L1); each loads its next key's row while it uses this one, each lane holds D/32 dims,
// each warp keeps an online softmax (running max m, sum l, output o) per head, and the key warps merge at the end
// through shared memory. Sequences of many tokens (prefills) go to attention_prefill.cuh's tensor-core kernel
// instead, as attend_plan decides; block x then takes token tok[x] of the plan's list.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/attention.cuh"
#include "backend/cuda/attention_prefill.cuh"
#include "backend/cuda/pdl.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kBlockTokens = kAttnPageTokens;
// attend_kernel's 8 warps: warp w takes the keys kb + w % 4, +4, … and the query heads of group w / 4 (half the kv
// head's), so each warp's per-key chain covers 4 heads, not 8 (at one token the kernel is bound by that chain: ncu,
// bench/cuda/NOTES.md); each head's keys are still summed by the same warp in the same order.
constexpr int kKeyWarps = 4;
constexpr int kHeadGroups = 2;
constexpr int kWarps = kKeyWarps * kHeadGroups;
constexpr int kMaxRep = 8;  // q heads per kv head (Qwen3.5/3.6: 8)
constexpr int kRepPerWarp = kMaxRep / kHeadGroups;  // held in registers

__device__ __forceinline__ int64_t kv_row(const int* bt, int p, int Hkv, int h, int D) {
  return ((int64_t(bt[p / kBlockTokens]) * kBlockTokens + p % kBlockTokens) * Hkv + h) * D;
}

// One block per (token, head of q or k); D threads ≤ 256.
__global__ void norm_rope_kernel(float* qg, int64_t ldq, const float* __restrict__ k, int64_t ldk, const float* __restrict__ v,
                                 int64_t ldv, const float* __restrict__ q_norm, const float* __restrict__ k_norm,
                                 const float* __restrict__ inv_freq, const int* __restrict__ pos,
                                 const int* __restrict__ bt_off, const int* __restrict__ bt, __nv_bfloat16* k_pages,
                                 __nv_bfloat16* v_pages, AttnDimsDev d) {
  HLWQ_PDL_PREAMBLE();
  __shared__ float scratch[32];
  __shared__ float x[256];
  const int t = blockIdx.x, hh = blockIdx.y, i = threadIdx.x;
  const bool is_q = hh < d.Hq;
  const int h = is_q ? hh : hh - d.Hq;
  float* src = is_q ? qg + int64_t(t) * ldq + int64_t(h) * 2 * d.D : nullptr;
  const float val = is_q ? src[i] : k[int64_t(t) * ldk + int64_t(h) * d.D + i];
  const float ss = block_sum(val * val, scratch);
  const float y = val * rsqrtf(ss / float(d.D) + d.eps) * (1.f + (is_q ? q_norm[i] : k_norm[i]));
  x[i] = y;
  __syncthreads();
  float o = y;
  const int half = d.r / 2;
  if (i < d.r) {
    const int j = i < half ? i : i - half;
    const float ang = float(pos[t]) * inv_freq[j];
    const float cs = cosf(ang), sn = sinf(ang);
    o = i < half ? x[i] * cs - x[i + half] * sn : x[i] * cs + x[i - half] * sn;
  }
  if (is_q) {
    src[i] = o;
  } else {
    const int64_t row = kv_row(bt + bt_off[t], pos[t], d.Hkv, h, d.D);
    k_pages[row + i] = __float2bfloat16_rn(o);
    v_pages[row + i] = __float2bfloat16_rn(v[int64_t(t) * ldv + int64_t(h) * d.D + i]);
  }
}

// n bf16 at p (16-, 8- or 4-byte aligned: a K/V row starts at a multiple of D elements) to fp32, exactly.
template <int N>
__device__ __forceinline__ void load_bf16(const __nv_bfloat16* p, float (&f)[N]) {
  static_assert(N == 2 || N == 4 || N == 8, "dims per lane");
  uint32_t w[N / 2];
  if constexpr (N == 8) {
    const uint4 u = *reinterpret_cast<const uint4*>(p);
    w[0] = u.x, w[1] = u.y, w[2] = u.z, w[3] = u.w;
  } else if constexpr (N == 4) {
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    w[0] = u.x, w[1] = u.y;
  } else {
    w[0] = *reinterpret_cast<const uint32_t*>(p);
  }
#pragma unroll
  for (int j = 0; j < N / 2; ++j) f[2 * j] = __uint_as_float(w[j] << 16), f[2 * j + 1] = __uint_as_float(w[j] & 0xffff0000u);
}

template <int D>
__global__ void __launch_bounds__(kWarps * 32) attend_kernel(const float* __restrict__ qg, int64_t ldq, const int* __restrict__ pos,
                                                             const int* __restrict__ bt_off, const int* __restrict__ bt,
                                                             const __nv_bfloat16* __restrict__ k_pages,
                                                             const __nv_bfloat16* __restrict__ v_pages,
                                                             const int* __restrict__ tok, AttnDimsDev d, float* out,
                                                             float* part) {
  HLWQ_PDL_PREAMBLE();
  constexpr int DPL = D / 32;  // dims per lane
  extern __shared__ float sm[];  // [kKeyWarps][rep][D] o, then [kKeyWarps][rep] m and l
  const int t = tok ? tok[blockIdx.x] : blockIdx.x, hk = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int kw = warp % kKeyWarps, hg = warp / kKeyWarps;
  const int rep = d.Hq / d.Hkv, P = pos[t] + 1, ns = gridDim.z, z = blockIdx.z;
  const int hpw = (rep + kHeadGroups - 1) / kHeadGroups, r0 = hg * hpw, nr = max(0, min(hpw, rep - r0));  // heads
  const int chunk = (P + ns - 1) / ns, kb = z * chunk, ke = min(P, kb + chunk);  // this block's keys
  const int* btt = bt + bt_off[t];
  const float scale = rsqrtf(float(D));
  float q[kRepPerWarp][DPL], o[kRepPerWarp][DPL], m[kRepPerWarp], l[kRepPerWarp];
#pragma unroll
  for (int r = 0; r < kRepPerWarp; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int j = 0; j < DPL; ++j) {
      q[r][j] = r < nr ? qg[int64_t(t) * ldq + int64_t(hk * rep + r0 + r) * 2 * D + lane * DPL + j] * scale : 0.f;
      o[r][j] = 0.f;
    }
  }
  // each warp's keys p = kb + kw, +kKeyWarps, …: the next key's K/V row is loaded before this one is used, so a
  // warp waits for memory once, not once per key
  float kn[DPL], vn[DPL];
  if (kb + kw < ke) {
    const int64_t row = kv_row(btt, kb + kw, d.Hkv, hk, D) + lane * DPL;
    load_bf16<DPL>(k_pages + row, kn);
    load_bf16<DPL>(v_pages + row, vn);
  }
  for (int p = kb + kw; p < ke; p += kKeyWarps) {
    float kf[DPL], vf[DPL];
#pragma unroll
    for (int j = 0; j < DPL; ++j) kf[j] = kn[j], vf[j] = vn[j];
    if (p + kKeyWarps < ke) {
      const int64_t row = kv_row(btt, p + kKeyWarps, d.Hkv, hk, D) + lane * DPL;
      load_bf16<DPL>(k_pages + row, kn);
      load_bf16<DPL>(v_pages + row, vn);
    }
#pragma unroll
    for (int r = 0; r < kRepPerWarp; ++r) {
      if (r >= nr) break;
      float sc = 0.f;
#pragma unroll
      for (int j = 0; j < DPL; ++j) sc += q[r][j] * kf[j];
      sc = warp_sum(sc);
      const float mn = fmaxf(m[r], sc), corr = expf(m[r] - mn), e = expf(sc - mn);
      l[r] = l[r] * corr + e;
#pragma unroll
      for (int j = 0; j < DPL; ++j) o[r][j] = o[r][j] * corr + e * vf[j];
      m[r] = mn;
    }
  }
  float* so = sm;
  float* sml = sm + kKeyWarps * rep * D;
#pragma unroll
  for (int r = 0; r < kRepPerWarp; ++r) {
    if (r >= nr) break;
#pragma unroll
    for (int j = 0; j < DPL; ++j) so[(kw * rep + r0 + r) * D + lane * DPL + j] = o[r][j];
    if (lane == 0) sml[(kw * rep + r0 + r) * 2] = m[r], sml[(kw * rep + r0 + r) * 2 + 1] = l[r];
  }
  __syncthreads();
  // merge: thread handles (head r, dim i) pairs
  for (int idx = threadIdx.x; idx < rep * D; idx += blockDim.x) {
    const int r = idx / D, i = idx % D;
    float M = -INFINITY;
    for (int w = 0; w < kKeyWarps; ++w) M = fmaxf(M, sml[(w * rep + r) * 2]);
    float L = 0.f, acc = 0.f;
    for (int w = 0; w < kKeyWarps; ++w) {
      const float mw = sml[(w * rep + r) * 2];
      if (mw == -INFINITY) continue;  // a warp that saw no key
      const float f = expf(mw - M);
      L += sml[(w * rep + r) * 2 + 1] * f;
      acc += so[(w * rep + r) * D + i] * f;
    }
    const int hq = hk * rep + r;
    if (ns == 1) {
      const float gate = qg[int64_t(t) * ldq + int64_t(hq) * 2 * D + D + i];
      out[(int64_t(t) * d.Hq + hq) * D + i] = acc / L * (1.f / (1.f + expf(-gate)));
    } else {  // partial result of this key split: unnormalized o, then its max and sum
      float* pp = part + ((int64_t(blockIdx.x) * d.Hq + hq) * ns + z) * (D + 2);  // by block row, not token
      pp[i] = acc;
      if (i == 0) pp[D] = M, pp[D + 1] = L;
    }
  }
}

// Merges the key splits of attend_kernel: out = Σ_z e^{M_z − M} o_z / Σ_z e^{M_z − M} L_z, gated. The first warp
// reads every split's (M_z, L_z) at once (ns ≤ 32) and leaves the factors e^{M_z − M} in shared memory; then each
// thread sums its dim over the splits with all loads independent.
template <int D>
__global__ void attend_combine_kernel(const float* __restrict__ qg, int64_t ldq, const float* __restrict__ part, int ns,
                                      const int* __restrict__ tok, AttnDimsDev d, float* out) {
  HLWQ_PDL_PREAMBLE();
  __shared__ float f_s[32];
  __shared__ float L_s;
  const int t = tok ? tok[blockIdx.x] : blockIdx.x, hq = blockIdx.y, i = threadIdx.x;
  const float* pp = part + (int64_t(blockIdx.x) * d.Hq + hq) * ns * (D + 2);
  if (i < 32) {  // D ≥ 64: a whole warp
    const float mz = i < ns ? pp[i * (D + 2) + D] : -INFINITY, lz = i < ns ? pp[i * (D + 2) + D + 1] : 0.f;
    float M = mz;
    for (int o = 16; o > 0; o >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, o));
    const float f = mz == -INFINITY ? 0.f : expf(mz - M);  // a split with no key weighs nothing
    const float L = warp_sum(lz * f);
    f_s[i] = f;
    if (i == 0) L_s = L;
  }
  __syncthreads();
  float acc = 0.f;  // all ≤ 32 loads issued together (a loop over ns would wait for them 8 at a time)
#pragma unroll
  for (int z = 0; z < 32; ++z)
    if (z < ns) acc += pp[z * (D + 2) + i] * f_s[z];
  const float gate = qg[int64_t(t) * ldq + int64_t(hq) * 2 * D + D + i];
  out[(int64_t(t) * d.Hq + hq) * D + i] = acc / L_s * (1.f / (1.f + expf(-gate)));
}

}  // namespace

void qk_norm_rope_store(float* qg, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv, const float* q_norm,
                        const float* k_norm, const float* inv_freq, const int* pos, const int* bt_off, const int* bt,
                        uint16_t* k_pages, uint16_t* v_pages, int64_t T, const AttnDimsDev& d, cudaStream_t st) {
  HLWQ_CHECK(d.D % 32 == 0 && d.D <= 256 && d.r % 2 == 0 && d.r <= d.D, "qk_norm_rope_store: head_dim {} rotary {}",
             d.D, d.r);
  if (T == 0) return;
  const dim3 grid(unsigned(T), unsigned(d.Hq + d.Hkv));
  norm_rope_kernel<<<grid, d.D, 0, st>>>(qg, ldq, k, ldk, v, ldv, q_norm, k_norm, inv_freq, pos, bt_off, bt,
                                         reinterpret_cast<__nv_bfloat16*>(k_pages),
                                         reinterpret_cast<__nv_bfloat16*>(v_pages), d);
  HLWQ_CUDA_LAUNCH_CHECK("qk_norm_rope_store {} tokens", T);
}

int64_t attend_splits(int64_t T, const AttnDimsDev& d, int sms) {
  // split the keys when (tokens × kv heads) blocks would leave most SMs idle (decode), up to 32 splits
  const int64_t blocks = T * d.Hkv;
  return std::clamp<int64_t>((2 * int64_t(sms) + blocks - 1) / blocks, 1, 32);
}

int64_t attend_workspace_floats(int64_t T, const AttnDimsDev& d, int sms) {
  // the most of any launch of n ≤ T tokens (a plan may leave fewer tokens than the batch to the CUDA cores, each with
  // more splits); splits only fall as n grows, so the scan stops at the first n that needs none
  int64_t most = 0;
  for (int64_t n = 1; n <= T; ++n) {
    const int64_t ns = attend_splits(n, d, sms);
    if (ns == 1) break;
    most = std::max(most, n * ns);
  }
  return most * d.Hq * (d.D + 2);
}

AttendPlanHost attend_plan(const std::vector<AttendSeq>& seqs, const AttnDimsDev& d) {
  return attend_plan_blocks(seqs, attend_prefill_supported(d) ? attend_prefill_block_tokens(d) : 0);
}

AttendPlanHost attend_plan_blocks(const std::vector<AttendSeq>& seqs, int64_t block_tokens) {
  AttendPlanHost p;
  const bool tc = block_tokens > 0;
  struct Tile {
    int first, end, keys;
  };
  std::vector<Tile> tiles;
  std::vector<int> core;
  int64_t T = 0;
  for (const AttendSeq& q : seqs) {
    HLWQ_CHECK(q.t0 == T && q.n >= 1 && q.pos0 >= 0, "attend_plan: sequence of {} tokens at {} after {} tokens", q.n,
               q.t0, T);
    T += q.n;
    if (tc && q.n >= kAttendPrefillMinTokens) {
      for (int64_t a = q.t0; a < q.t0 + q.n; a += block_tokens) {
        const int64_t e = std::min(a + block_tokens, q.t0 + q.n);
        tiles.push_back({int(a), int(e), int(q.pos0 + (e - q.t0))});
      }
    } else {
      for (int64_t t = q.t0; t < q.t0 + q.n; ++t) core.push_back(int(t));
    }
  }
  if (tiles.empty()) return p;  // every token on the CUDA cores in batch order: no words
  // the blocks that see the most keys start first (the longest run sets the kernel's end); ties in batch order
  std::stable_sort(tiles.begin(), tiles.end(), [](const Tile& a, const Tile& b) { return a.keys > b.keys; });
  for (const Tile& t : tiles) p.words.insert(p.words.end(), {t.first, t.end});
  p.words.insert(p.words.end(), core.begin(), core.end());
  p.n_tiles = int64_t(tiles.size());
  p.n_core = int64_t(core.size());
  HLWQ_CHECK(int64_t(p.words.size()) <= attend_plan_capacity(T), "attend_plan: {} words for {} tokens", p.words.size(),
             T);
  return p;
}

void attend(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt, const uint16_t* k_pages,
            const uint16_t* v_pages, int64_t T, const AttendPlan& plan, const AttnDimsDev& d, float* out, float* ws,
            int64_t ws_floats, cudaStream_t st) {
  const int rep = d.Hkv > 0 ? d.Hq / d.Hkv : 0;
  HLWQ_CHECK(d.Hkv > 0 && d.Hq % d.Hkv == 0 && rep <= kMaxRep, "attend: {} q heads over {} kv heads", d.Hq, d.Hkv);
  HLWQ_CHECK(!plan.words || plan.n_tiles + plan.n_core <= T, "attend: a plan of {} blocks and {} tokens for {} tokens",
             plan.n_tiles, plan.n_core, T);
  if (T == 0) return;
  if (plan.words && plan.n_tiles > 0)
    attend_prefill(qg, ldq, pos, bt_off, bt, k_pages, v_pages, plan.words, plan.n_tiles, d, out, st);
  const int* tok = plan.words ? plan.words + 2 * plan.n_tiles : nullptr;  // the CUDA-core kernel's tokens
  const int64_t n = plan.words ? plan.n_core : T;
  if (n == 0) return;
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "attend: SM count");
  const int64_t ns = attend_splits(n, d, sms);
  HLWQ_CHECK(reinterpret_cast<uintptr_t>(k_pages) % 16 == 0 && reinterpret_cast<uintptr_t>(v_pages) % 16 == 0,
             "attend: K/V pages must be 16-byte aligned (vector loads of a row)");
  HLWQ_CHECK(ns == 1 || (ws && ws_floats >= attend_workspace_floats(n, d, sms)),
             "attend: {} key splits need a workspace of {} floats, got {}", ns, attend_workspace_floats(n, d, sms),
             ws_floats);
  const dim3 grid(unsigned(n), unsigned(d.Hkv), unsigned(ns));
  const size_t smem = size_t(kKeyWarps * rep * (d.D + 2)) * sizeof(float);
  auto kp = reinterpret_cast<const __nv_bfloat16*>(k_pages);
  auto vp = reinterpret_cast<const __nv_bfloat16*>(v_pages);
  const dim3 cgrid(unsigned(n), unsigned(d.Hq));
  switch (d.D) {
#define HLWQ_ATTEND_CASE(DD)                                                                                  \
  case DD:                                                                                                    \
    attend_kernel<DD><<<grid, kWarps * 32, smem, st>>>(qg, ldq, pos, bt_off, bt, kp, vp, tok, d, out, ws);   \
    HLWQ_CUDA_LAUNCH_CHECK("attend {} tokens, {} kv heads, D {}, {} splits", n, d.Hkv, d.D, ns);             \
    if (ns > 1) {                                                                                             \
      attend_combine_kernel<DD><<<cgrid, DD, 0, st>>>(qg, ldq, ws, int(ns), tok, d, out);                     \
      HLWQ_CUDA_LAUNCH_CHECK("attend combine {} tokens, {} splits", n, ns);                                   \
    }                                                                                                         \
    break;
    HLWQ_ATTEND_CASE(64)
    HLWQ_ATTEND_CASE(128)
    HLWQ_ATTEND_CASE(256)
#undef HLWQ_ATTEND_CASE
    default: hlwq::fail("attend: head_dim {} (supported 64, 128, 256)", d.D);
  }
}

}  // namespace hlwq::cuda
