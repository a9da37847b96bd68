// The router and the plan of a one-token step in one cluster launch (see moe_router_one.cuh). Weights in the bf16
// fragment order of weight_pack.h: per (16-row tile, 16 columns) a uint4 a lane, the four A registers.
#include "backend/cuda/moe_router_one.cuh"

#include <cooperative_groups.h>

#include "backend/cuda/cluster_barrier.cuh"
#include "backend/cuda/cluster_launch.h"
#include "backend/cuda/cuda_check.h"
#include "backend/cuda/expert_cache_plan.cuh"
#include "backend/cuda/mma.cuh"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/route_token.cuh"

namespace hlwq::cuda {
namespace {

constexpr int kWarps = 8;
constexpr int kFlight = 4;  // (row tile, k-unit) pairs a warp holds in flight: 32 uint4 a lane

struct RouterParams {
  const uint4* w;  // [out_pad/16][in_pad/16][32] uint4
  const uint4* x;  // the token's fragments: slot 0 of tile 0, [ku · 4][32] uint4
  int ku;          // in_pad / 128
  int n_rt;        // row tiles holding the out rows
  int out;         // E + (S > 0)
  float* logits;
  int E, k, S, max_tiles;
  MoePlan plan;
  ExpertCachePlan cache;  // valid when has_cache: the step's expert cache plan, run after the routing
  bool has_cache;
  int cache_at;  // byte offset of the cache plan's shared memory
};

// Shared memory of a block of a cluster of C: the logits (n_rt · 16 floats, used in the home block), then the
// warps' partial sums of the block's row tiles ([tiles][kWarps][16]), then (16-byte aligned, with a cache) the
// cache plan's slot state.
size_t cache_offset(int n_rt, int C) {
  return (size_t(n_rt * 16 + (n_rt + C - 1) / C * kWarps * 16) * sizeof(float) + 15) / 16 * 16;
}
size_t smem_bytes(int n_rt, int C) { return cache_offset(n_rt, C) + sizeof(ExpertCachePlanSmem); }

// Block r of the cluster computes the row tiles r, r + C, …; warp w of it the k-units w, w + 8, … of each, in order
// (pairs of tile and unit, kFlight of them in flight: all of them at Qwen3.6's shape, H 2048 and 257 rows). The
// last block (home: it has no more row tiles than any other) gathers the logits and its first warp plans; with a
// cache, home stages the slot state while the others still multiply, and that warp plans the cache too.
template <int kMaxPerLane>
__global__ void __launch_bounds__(kWarps * 32, 1) router_one_kernel(RouterParams p) {
  HLWQ_PDL_EARLY_READS("the router's weights, which no kernel writes; the token's fragments (written by the norm "
                       "before) after the wait, and the plan is written only after it");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  extern __shared__ float sm[];
  namespace cg = cooperative_groups;
  cg::cluster_group cluster = cg::this_cluster();
  const int C = int(cluster.num_blocks()), rank = int(cluster.block_rank());
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
  const int nu = warp < p.ku ? (p.ku - warp + kWarps - 1) / kWarps : 0;  // this warp's k-units of a tile
  const int nt = rank < p.n_rt ? (p.n_rt - rank + C - 1) / C : 0;          // this block's row tiles
  const int pairs = nt * nu;
  uint4 wa[kFlight][8];
  auto load = [&](int q0) {
#pragma unroll
    for (int j = 0; j < kFlight; ++j) {
      const int q = q0 + j;
      if (q >= pairs) break;
      const int64_t rt = rank + int64_t(q / nu) * C, u = warp + (q % nu) * kWarps;
#pragma unroll
      for (int st = 0; st < 8; ++st) wa[j][st] = __ldg(p.w + ((rt * 8 * p.ku + 8 * u + st) * 32 + lane));
    }
  };
  load(0);
  HLWQ_PDL_PREAMBLE();
  cluster_arrive_relaxed();  // the first phase only says every block runs (before any writes into another's memory)
  const int home = C - 1;
  ExpertCachePlanSmem* cs = reinterpret_cast<ExpertCachePlanSmem*>(reinterpret_cast<char*>(sm) + p.cache_at);
  if (p.has_cache && rank == home) expert_cache_plan_stage(p.cache, *cs, threadIdx.x, blockDim.x);  // see below

  float* part = sm + p.n_rt * 16;  // [nt][kWarps][16]
  float acc[4] = {};
  for (int q0 = 0; q0 < pairs; q0 += kFlight) {
    if (q0 > 0) load(q0);
#pragma unroll
    for (int j = 0; j < kFlight; ++j) {
      const int q = q0 + j;
      if (q >= pairs) break;
      const int u = warp + (q % nu) * kWarps;
      uint4 xa[4];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) xa[jj] = __ldg(p.x + ((u * 4 + jj) * 32 + lane));
#pragma unroll
      for (int st = 0; st < 8; ++st) {
        const uint4& a = wa[j][st];
        const uint4& b = xa[st >> 1];
        if (st & 1) mma_bf16(acc, a.x, a.y, a.z, a.w, b.z, b.w);
        else mma_bf16(acc, a.x, a.y, a.z, a.w, b.x, b.y);
      }
      if (q % nu == nu - 1) {  // this warp's last unit of the tile: C fragment column 0 (lanes c = 0) is the token
        if ((lane & 3) == 0) {
          float* pw = part + ((q / nu) * kWarps + warp) * 16;
          pw[g] = acc[0];
          pw[g + 8] = acc[2];
        }
        acc[0] = acc[1] = acc[2] = acc[3] = 0.f;
      }
    }
  }
  __syncthreads();  // the partials, and home's staged slot state

  // each logit: the warps' partials in warp order, into the home block's logits (and global memory)
  float* lg0 = cluster.map_shared_rank(sm, home);
  const int nw = p.ku < kWarps ? p.ku : kWarps;
  cluster_wait();  // every block runs
  for (int i = threadIdx.x; i < nt * 16; i += blockDim.x) {
    const int ti = i >> 4, r = i & 15, row = (rank + ti * C) * 16 + r;
    const float* pt = part + ti * kWarps * 16 + r;
    float v = pt[0];
    for (int w = 1; w < nw; ++w) v += pt[w * 16];
    if (row < p.out) {
      lg0[row] = v;
      p.logits[row] = v;
    }
  }
  cluster_arrive();
  cluster_wait();  // every logit is in the home block
  if (rank == home && warp == 0) {
    route_one_plan<kMaxPerLane>(sm, p.E, p.k, p.S, p.plan, p.max_tiles);  // ends with __syncwarp: ids visible
    if (p.has_cache) expert_cache_plan_walk(p.cache, *cs, lane);
  }
#else
  __trap();  // plan_router_one takes this kernel only where it was compiled for sm_90 or later
#endif
}

using Kernel = void (*)(RouterParams);
Kernel kernel_for(int64_t E) { return E <= 256 ? router_one_kernel<8> : router_one_kernel<16>; }

}  // namespace

RouterOne plan_router_one(const PackedLinear& router, int64_t E, int64_t k, int64_t S) {
  RouterOne r;
  if (router.format != PackedFormat::bf16 || E < 1 || E > kRouteMaxExperts || k < 1 || k > E || S < 0 || k + S > 32 ||
      router.out != E + (S > 0 ? 1 : 0))
    return r;
  int dev = 0, major = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "router of one token: device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), "router of one token: arch");
  if (major < 9) return r;
  const Kernel kern = kernel_for(E);
  cudaFuncAttributes fa{};  // a binary whose newest code for this device is older than sm_90 has the trap body
  HLWQ_CUDA_CHECK(cudaFuncGetAttributes(&fa, kern), "router of one token: kernel attributes");
  if (fa.binaryVersion < 90) return r;
  HLWQ_CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
                  "router of one token: cluster size {}", kRouterOneClusters[0]);
  const int n_rt = int((router.out + 15) / 16);
  for (const int C : kRouterOneClusters)
    if (co_scheduled_clusters(kern, C, kWarps * 32, smem_bytes(n_rt, C)) > 0) {
      r.cluster = C;
      break;
    }
  return r;
}

void router_one(const RouterOne& r, const PackedLinear& router, const uint32_t* x_tok, float* logits, int64_t E,
                int64_t k, int64_t S, const MoePlan& plan, int64_t max_tiles, cudaStream_t st, int cluster,
                const ExpertCachePlan* cache) {
  HLWQ_CHECK(r.available(), "router of one token: not available for this router or device");
  if (cluster == 0) cluster = r.cluster;
  HLWQ_CHECK(max_tiles >= moe_max_tiles(1, k, E, S), "router of one token: {} tiles", max_tiles);
  RouterParams p{};
  p.w = reinterpret_cast<const uint4*>(router.q.get());
  p.x = reinterpret_cast<const uint4*>(x_tok);
  p.ku = int(router.in_pad / 128);
  p.n_rt = int((router.out + 15) / 16);
  p.out = int(router.out);
  p.logits = logits;
  p.E = int(E);
  p.k = int(k);
  p.S = int(S);
  p.max_tiles = int(max_tiles);
  p.plan = plan;
  if (cache) {
    HLWQ_CHECK(cache->E == E && cache->n_ids == k && cache->ids == plan.topk_ids && !cache->joined_prefetch,
               "router of one token: a cache plan of {} experts and {} ids{}{} for {} experts, top-{}", cache->E,
               cache->n_ids, cache->ids == plan.topk_ids ? "" : " not the plan's",
               cache->joined_prefetch ? " after a prefetch join" : "", E, k);
    p.cache = *cache;
    p.has_cache = true;
  }
  p.cache_at = int(cache_offset(p.n_rt, cluster));
  const Kernel kern = kernel_for(E);
  const size_t smem = cache ? smem_bytes(p.n_rt, cluster) : cache_offset(p.n_rt, cluster);
  if (cluster != r.cluster)  // a test's size: the planned one was checked once
    HLWQ_CHECK(co_scheduled_clusters(kern, cluster, kWarps * 32, smem) > 0,
               "router of one token: clusters of {} blocks do not run here", cluster);
  const ClusterLaunch l(cluster, dim3(unsigned(cluster)), kWarps * 32, smem, st);
  HLWQ_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, kern, p), "router of one token: {} experts, cluster {}", E, cluster);
}

}  // namespace hlwq::cuda
