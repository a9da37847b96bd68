// The fused expert MLP (see moe_fused.cuh). Weights in the fragment order of weight_pack.h, read as gemm.cu reads
// them: a k-unit (128 columns) of a 16-row tile is two uint4 a lane, its scales one float2 (rows g, g + 8).
#include "backend/cuda/moe_fused.cuh"

#include <cooperative_groups.h>
#include <cuda_bf16.h>

#include "backend/cuda/cluster_barrier.cuh"
#include "backend/cuda/cluster_launch.h"
#include "backend/cuda/copy_span.cuh"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/xfrag.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kSplit = 4;  // warps splitting the k-units of one gate_up group; a block's pass covers two groups
constexpr int kUnits = 4;  // k-units a warp keeps in flight: 16 uint4 a lane in gate_up, 8 in down

struct FusedParams {
  const uint32_t* const* gq;  // [M] gate_up weights and scales, chosen by tile_mat
  const float* const* gs;
  const uint32_t* const* dq;  // [M] down
  const float* const* ds;
  const int* tile_mat;   // [tiles]
  const uint32_t* x;     // token fragments (xfrag, ku_g · 128 columns)
  const int* x_rows;     // [tiles · 8] slot → token row, −1 zeros
  int ku_g;              // gate_up in_pad / 128
  int n_groups;          // gate_up row groups: a gate and an up tile, 16 features of h each
  int h_in_pad;          // down in_pad: h's columns
  int ku_d;              // h_in_pad / 128
  int n_rt;              // down row tiles (out_pad / 16)
  int out;               // down rows
  int n_slots;
  uint32_t* h;           // h's fragments in global memory (h_in_pad columns)
  float* y;
  int64_t ldy;
  const float* slot_w;
  CopyThrough ct;        // copies null: none
};

// Where a tile's expert is read from and, under copy-through, written to.
struct ExpertSource {
  const uint4 *gq, *dq;
  const float2 *gs, *ds;
  uint4 *gq_to, *dq_to;  // the slot, for the tile that copies (else null)
  float2 *gs_to, *ds_to;
};

// The tile's expert m: from the tables, or — m admitted this step (copy-through) — from its host copy, which the
// first tile of m (the only one at up to 8 tokens) also writes into the slot the plan gave it.
__device__ ExpertSource expert_source(const FusedParams& p, int m) {
  ExpertSource s{reinterpret_cast<const uint4*>(p.gq[m]), reinterpret_cast<const uint4*>(p.dq[m]),
                 reinterpret_cast<const float2*>(p.gs[m]), reinterpret_cast<const float2*>(p.ds[m]),
                 nullptr, nullptr, nullptr, nullptr};
  if (!p.ct.copies) return s;
  int slot = -1;
  for (int i = 0, n = *p.ct.n_copies; i < n; ++i)
    if (p.ct.copies[2 * i] == m) slot = p.ct.copies[2 * i + 1];
  if (slot < 0) return s;
  const ExpertLayout& L = p.ct.layout;
  const uint8_t* src = p.ct.host + int64_t(m) * L.bytes;
  s.gq = reinterpret_cast<const uint4*>(src + L.gu_q);
  s.gs = reinterpret_cast<const float2*>(src + L.gu_s);
  s.dq = reinterpret_cast<const uint4*>(src + L.dn_q);
  s.ds = reinterpret_cast<const float2*>(src + L.dn_s);
  for (int t = 0; t < int(blockIdx.y); ++t)
    if (p.tile_mat[t] == m) return s;  // an earlier tile of m copies it
  uint8_t* dst = p.ct.slots + int64_t(slot) * L.bytes;
  s.gq_to = reinterpret_cast<uint4*>(dst + L.gu_q);
  s.gs_to = reinterpret_cast<float2*>(dst + L.gu_s);
  s.dq_to = reinterpret_cast<uint4*>(dst + L.dn_q);
  s.ds_to = reinterpret_cast<float2*>(dst + L.dn_s);
  return s;
}

// acc += the k-unit's 16 × 128 INT4 tile (w: its two uint4, sc: its row scales) times 128 columns of 8 slots (x:
// the unit's four uint4 of B fragments).
__device__ __forceinline__ void int4_unit(float (&acc)[4], const uint4 (&w)[2], float2 sc, const uint4 (&x)[4]) {
  float part[4] = {};
#pragma unroll
  for (int hh = 0; hh < 2; ++hh)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      uint32_t a[4];
      dq8((&w[hh].x)[jj], a);
      const int st = hh * 4 + jj;
      const uint4& b = x[st >> 1];
      mma_bf16(part, a[0], a[1], a[2], a[3], st & 1 ? b.z : b.x, st & 1 ? b.w : b.y);
    }
  acc[0] += part[0] * sc.x;
  acc[1] += part[1] * sc.x;
  acc[2] += part[2] * sc.y;
  acc[3] += part[3] * sc.y;
}

__global__ void __launch_bounds__(kWarps * 32, 2) fused_mlp_kernel(FusedParams p) {
  HLWQ_PDL_PREAMBLE();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ uint4 hs[];  // this tile's h, xfrag order: [h_in_pad / 32 chunks][32 lanes]
  __shared__ float red[kWarps][8][32];
  const int m = p.tile_mat[blockIdx.y];
  if (m < 0) return;  // the whole cluster leaves (its blocks share the tile), so no barrier waits for it
  // Lane (g, c) reads row x_rows[slot g] of x in phase 1: loaded with the tile's matrix, not after it
  const int r = p.x_rows[blockIdx.y * 8 + (threadIdx.x & 31) / 4];
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  const int C = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, c = lane & 3;
  const int n_chunks = p.h_in_pad / 32;  // 32 columns of h: one pass of a block (two gate_up groups)
  const ExpertSource src = expert_source(p, m);
  const bool copies = src.gq_to != nullptr;  // every weight this block loads is also stored into the slot
  if (copies && threadIdx.x == 0) copy_span_begin(p.ct.timing);

  // h's columns past the gate_up rows must read as zero. A chunk some block owns is written whole by its owner (its
  // second group's half, past the last group, as zeros); the chunks past the owned ones each block zeroes itself.
  // So no block writes into a chunk another block pushes into, and the first barrier orders no memory (the zeros of
  // this block's own chunks precede its writes into them by phase 1's barrier).
  const int owned = (p.n_groups + 1) / 2;
  for (int i = threadIdx.x; i < n_chunks * 32; i += blockDim.x)
    if (i >= owned * 32 || (i >> 5) % C == rank) hs[i] = make_uint4(0, 0, 0, 0);
  cluster_arrive_relaxed();

  // Phase 1: the chunks of h this block owns. Lane (g, c) reads row x_rows[slot g] of x: that row's fragment words
  // sit where lane (r % 8, c) of x's tile r / 8 holds them.
  const int xo = r >= 0 ? (r >> 3) * p.ku_g * 128 + (r & 7) * 4 + c : -1;
  const uint4* X = reinterpret_cast<const uint4*>(p.x);
  const uint4* Wg = src.gq;
  const float2* Sg = src.gs;
  __nv_bfloat16* hb = reinterpret_cast<__nv_bfloat16*>(hs);
  const int gl = warp / kSplit, ks = warp % kSplit;
  for (int q = rank; 2 * q < p.n_groups; q += C) {
    const int grp = 2 * q + gl;
    const bool live = grp < p.n_groups;
    float acc[2][4] = {};
    if (live) {
      for (int u0 = ks; u0 < p.ku_g; u0 += kSplit * kUnits) {
        uint4 wa[kUnits][2][2];
        float2 sc[kUnits][2];
#pragma unroll
        for (int j = 0; j < kUnits; ++j) {
          const int u = u0 + j * kSplit;
          if (u >= p.ku_g) break;
#pragma unroll
          for (int t = 0; t < 2; ++t) {  // t = 0 the gate tile, 1 the up tile of the group
            const int64_t rt = 2 * grp + t;
#pragma unroll
            for (int hh = 0; hh < 2; ++hh) wa[j][t][hh] = __ldg(Wg + ((rt * 2 * p.ku_g + 2 * u + hh) * 32 + lane));
            sc[j][t] = __ldg(Sg + ((rt * p.ku_g + u) * 8 + g));
          }
        }
#pragma unroll
        for (int j = 0; j < kUnits; ++j) {
          const int u = u0 + j * kSplit;
          if (u >= p.ku_g) break;
          uint4 xa[4];
#pragma unroll
          for (int jj = 0; jj < 4; ++jj) xa[jj] = xo >= 0 ? __ldg(X + (xo + (u * 4 + jj) * 32)) : make_uint4(0, 0, 0, 0);
          int4_unit(acc[0], wa[j][0], sc[j][0], xa);
          int4_unit(acc[1], wa[j][1], sc[j][1], xa);
          if (copies) {  // after the MMAs, which waited for these loads anyway
#pragma unroll
            for (int t = 0; t < 2; ++t) {
              const int64_t rt = 2 * grp + t;
#pragma unroll
              for (int hh = 0; hh < 2; ++hh) src.gq_to[(rt * 2 * p.ku_g + 2 * u + hh) * 32 + lane] = wa[j][t][hh];
              if (c == 0) src.gs_to[(rt * p.ku_g + u) * 8 + g] = sc[j][t];
            }
          }
        }
      }
    }
    // split-k: the kSplit warps of a group sum the partials of one C-fragment element each (warp ks: element ks of
    // the gate and of the up tile), adding them in warp order as one warp adding all would
    static_assert(kSplit == 4, "a warp of the group for each of the fragment's four elements");
#pragma unroll
    for (int i = 0; i < 8; ++i) red[warp][i][lane] = acc[i >> 2][i & 3];
    __syncthreads();
    if (live) {
      const int w0 = warp - ks;  // the group's first warp
      float gs = red[w0][ks][lane], us = red[w0][4 + ks][lane];
#pragma unroll
      for (int w = 1; w < kSplit; ++w) gs += red[w0 + w][ks][lane], us += red[w0 + w][4 + ks][lane];
      // C fragment: element i is feature 16·grp + g + 8·(i / 2) of slot 2c + i % 2
      hb[xfrag_elem(2 * c + (ks & 1), 16 * grp + g + 8 * (ks >> 1), p.h_in_pad)] =
          __float2bfloat16_rn(silu_f(gs) * us);
    }
    __syncthreads();  // red is written again by the next pass; this chunk of hs is complete
  }

  // The first k-units of this warp's first down tile: in flight across the exchange (the weights do not depend on h).
  int rt = rank * kWarps + warp;
  const uint4* Wd = src.dq;
  const float2* Sd = src.ds;
  uint4 wd[kUnits][2];
  float2 sd[kUnits];
  auto load_down = [&](int u0) {
#pragma unroll
    for (int j = 0; j < kUnits; ++j) {
      const int u = u0 + j;
      if (u >= p.ku_d) break;
#pragma unroll
      for (int hh = 0; hh < 2; ++hh) wd[j][hh] = __ldg(Wd + ((int64_t(rt) * 2 * p.ku_d + 2 * u + hh) * 32 + lane));
      sd[j] = __ldg(Sd + ((int64_t(rt) * p.ku_d + u) * 8 + g));
    }
  };
  if (rt < p.n_rt) load_down(0);
  float sw[2];  // the weights of this lane's two output slots, for phase 2's epilogue
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    const int slot = blockIdx.y * 8 + 2 * c + i;
    sw[i] = slot < p.n_slots ? p.slot_w[slot] : 0.f;
  }

  // Exchange: push this block's chunks into the other blocks' copies, then the cluster barrier, whose release waits
  // for every store this thread has in flight; so global h (which the calibration statistics read) after it.
  cluster_wait();  // every block runs
  for (int q = rank; q < owned; q += C)
    for (int i = threadIdx.x; i < C * 32; i += blockDim.x) {
      const int dst = i >> 5, l = i & 31;
      if (dst != rank) cluster.map_shared_rank(hs, dst)[q * 32 + l] = hs[q * 32 + l];
    }
  cluster_arrive();
  cluster_wait();  // every chunk of h is in every block
  uint4* H = reinterpret_cast<uint4*>(p.h) + int64_t(blockIdx.y) * n_chunks * 32;
  for (int q = rank; q < owned; q += C)
    if (threadIdx.x < 32) H[q * 32 + threadIdx.x] = hs[q * 32 + threadIdx.x];

  // Phase 2: y rows of down tile rt, its k-units in order.
  bool loaded = true;
  for (; rt < p.n_rt; rt += C * kWarps) {
    float acc[4] = {};
    for (int u0 = 0; u0 < p.ku_d; u0 += kUnits) {
      if (!loaded) load_down(u0);
      loaded = false;
#pragma unroll
      for (int j = 0; j < kUnits; ++j) {
        const int u = u0 + j;
        if (u >= p.ku_d) break;
        uint4 xa[4];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) xa[jj] = hs[(u * 4 + jj) * 32 + lane];
        int4_unit(acc, wd[j], sd[j], xa);
        if (copies) {
#pragma unroll
          for (int hh = 0; hh < 2; ++hh) src.dq_to[(int64_t(rt) * 2 * p.ku_d + 2 * u + hh) * 32 + lane] = wd[j][hh];
          if (c == 0) src.ds_to[(int64_t(rt) * p.ku_d + u) * 8 + g] = sd[j];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int slot = blockIdx.y * 8 + 2 * c + (i & 1), row = rt * 16 + g + 8 * (i >> 1);
      if (slot < p.n_slots && row < p.out) p.y[int64_t(slot) * p.ldy + row] = sw[i & 1] * acc[i];
    }
  }
  if (copies) {  // every admitted expert has one copying tile of C blocks (the caller's condition)
    __syncthreads();
    if (threadIdx.x == 0) copy_span_end(p.ct.timing, static_cast<unsigned long long>(*p.ct.n_copies) * unsigned(C));
  }
#else
  __trap();  // plan_fused_mlp launches this kernel only where it was compiled for sm_90 or later
#endif
}

}  // namespace

int FusedMlp::smallest() const {
  for (int i = kFusedSizes - 1; i >= 0; --i)
    if (wave_tiles[i] > 0) return kFusedClusters[i];
  return 0;
}

namespace {
int size_index(int cluster) {  // into kFusedClusters; −1: not a size the kernel takes
  for (int i = 0; i < kFusedSizes; ++i)
    if (kFusedClusters[i] == cluster) return i;
  return -1;
}
}  // namespace

int FusedMlp::cluster_for(int64_t tiles) const {
  for (int i = 0; i < kFusedSizes; ++i)
    if (wave_tiles[i] > 0 && tiles <= kFusedMaxWaves * wave_tiles[i]) return kFusedClusters[i];
  const int s = size_index(smallest());
  return s >= 0 && tiles <= kFusedMaxWavesSmallest * wave_tiles[s] ? kFusedClusters[s] : 0;
}

FusedMlp plan_fused_mlp(const GroupedLinear& gu, const GroupedLinear& dn) {
  FusedMlp f;
  if (gu.format != PackedFormat::int4 || dn.format != PackedFormat::int4) return f;
  HLWQ_CHECK(gu.out_pad % 32 == 0 && gu.out_pad / 2 <= dn.in_pad && dn.in_pad % 128 == 0 && gu.in_pad % 128 == 0 &&
                 dn.out_pad % 16 == 0,
             "fused expert MLP: gate_up [{}, {}] and down [{}, {}] (padded) do not chain", gu.out_pad, gu.in_pad,
             dn.out_pad, dn.in_pad);
  int dev = 0, major = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "fused expert MLP: device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "fused expert MLP: arch");
  const size_t smem = size_t(dn.in_pad) * 8 * sizeof(__nv_bfloat16);  // one tile of h
  if (major < 9 || smem > (size_t(48) << 10)) return f;
  cudaFuncAttributes fa{};  // a binary whose newest code for this device is older than sm_90 has the trap body
  HLWQ_CUDA_CHECK(cudaFuncGetAttributes(&fa, fused_mlp_kernel), "fused expert MLP: kernel attributes");
  if (fa.binaryVersion < 90) return f;
  HLWQ_CUDA_CHECK(cudaFuncSetAttribute(fused_mlp_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
                  "fused expert MLP: cluster size {}", kFusedClusters[0]);
  for (int i = 0; i < kFusedSizes; ++i)
    f.wave_tiles[i] = co_scheduled_clusters(fused_mlp_kernel, kFusedClusters[i], kWarps * 32, smem);
  return f;
}

void fused_mlp(const FusedMlp& f, const GroupedLinear& gu, const GroupedLinear& dn, const uint32_t* x_tok,
               const int* x_rows, const int* tile_mat, int64_t tiles, int64_t n_slots, uint32_t* h_xfrag, float* y,
               int64_t ldy, const float* slot_w, cudaStream_t st, const CopyThrough& ct, int cluster) {
  if (cluster == 0) cluster = f.cluster_for(tiles);
  if (cluster == 0) cluster = f.smallest();  // past the waves where it pays (a test's or benchmark's call)
  const int i = size_index(cluster);
  HLWQ_CHECK(i >= 0 && f.wave_tiles[i] > 0, "fused expert MLP: clusters of {} blocks do not run for these experts or this device ({} tiles)",
             cluster, tiles);
  if (tiles == 0) return;
  FusedParams p{};
  p.gq = gu.q.get();
  p.gs = gu.scale.get();
  p.dq = dn.q.get();
  p.ds = dn.scale.get();
  p.tile_mat = tile_mat;
  p.x = x_tok;
  p.x_rows = x_rows;
  p.ku_g = int(gu.in_pad / 128);
  p.n_groups = int(gu.out_pad / 32);
  p.h_in_pad = int(dn.in_pad);
  p.ku_d = int(dn.in_pad / 128);
  p.n_rt = int(dn.out_pad / 16);
  p.out = int(dn.out);
  p.n_slots = int(n_slots);
  p.h = h_xfrag;
  p.y = y;
  p.ldy = ldy;
  p.slot_w = slot_w;
  p.ct = ct;
  const ClusterLaunch l(cluster, dim3(unsigned(cluster), unsigned(tiles)), kWarps * 32,
                       size_t(dn.in_pad) * 8 * sizeof(__nv_bfloat16), st);
  HLWQ_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, fused_mlp_kernel, p), "fused expert MLP: {} tiles, cluster {}", tiles,
                  cluster);
}

}  // namespace hlwq::cuda
