// The GPU expert cache (see expert_cache_dev.cuh). The plan is one warp (expert_cache_plan.cuh, shared with the
// one-token router launch): lane 0 walks the requests in order (the policy is sequential by definition: each miss
// sees the slots earlier misses took), the warp scans for victims. Slot state is staged in shared memory for the
// walk and written back at the end. The prefetch plan is the same walk over the predicted experts, after a
// warp-per-token top-k of the next layer's router logits.
#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/expert_cache_plan.cuh"
#include "backend/cuda/pdl.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/copy_span.cuh"
#include "core/error.h"

namespace hlwq::cuda {
namespace {

__global__ void point_kernel(ExpertTables t, ExpertLayout lay, PointedExperts e, const uint8_t* base) {
  HLWQ_PDL_PREAMBLE();
  const int j = int(threadIdx.x);
  if (j < e.n) point_at(t, lay, e.id[j], base + int64_t(e.pos[j]) * lay.bytes);
}

// One warp: the slot state staged, then the walk (expert_cache_plan.cuh).
__global__ void plan_kernel(ExpertCachePlan p) {
  HLWQ_PDL_PREAMBLE();
  __shared__ ExpertCachePlanSmem s;
  const int lane = int(threadIdx.x);
  expert_cache_plan_stage(p, s, lane, 32);
  __syncwarp();
  expert_cache_plan_walk(p, s, lane);
}

struct PrefetchParams {
  const float* logits;
  int ld, T, k;
  ExpertCachePlan c;  // the cache (ids, n_ids unused; copies/n_copies are the prefetch's own lists)
};

constexpr int kPrefetchThreads = 256;
constexpr int kMaxPerLane = kExpertCacheMaxE / 32;

// One block: warps take tokens (top-k of the logits row, marking the predictions), then warp 0 places them.
__global__ void __launch_bounds__(kPrefetchThreads) prefetch_kernel(PrefetchParams q) {
  HLWQ_PDL_PREAMBLE();
  const ExpertCachePlan& p = q.c;
  __shared__ int s_hint[kExpertCacheMaxE];  // int for atomicExch: warps of several tokens may mark one expert
  __shared__ int s_slot_expert[kExpertCacheMaxE];
  __shared__ long long s_used[kExpertCacheMaxE];
  __shared__ unsigned char s_reserved[kExpertCacheMaxE];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, nw = blockDim.x >> 5;
  for (int i = tid; i < p.E; i += blockDim.x) s_hint[i] = 0;
  for (int i = tid; i < p.N; i += blockDim.x)
    s_slot_expert[i] = p.slot_expert[i], s_used[i] = p.slot_used[i], s_reserved[i] = 0;
  __syncthreads();
  for (int t = warp; t < q.T; t += nw) {
    const float* l = q.logits + int64_t(t) * q.ld;
    unsigned taken = 0;  // bit i: this lane's candidate lane + 32·i was chosen
    for (int j = 0; j < q.k; ++j) {
      float bk = -INFINITY;
      int bi = 0x7fffffff;
      for (int i = 0; i < kMaxPerLane; ++i) {
        const int e = lane + 32 * i;
        if (e >= p.E || (taken >> i & 1u)) continue;
        float x = l[e];
        if (isnan(x)) x = -INFINITY;
        if (bi == 0x7fffffff || x > bk) bk = x, bi = e;  // ascending e: ties keep the lower id
      }
      for (int o = 16; o > 0; o >>= 1) {
        const float ok = __shfl_xor_sync(0xffffffffu, bk, o);
        const int oi = __shfl_xor_sync(0xffffffffu, bi, o);
        if (oi != 0x7fffffff && (bi == 0x7fffffff || ok > bk || (ok == bk && oi < bi))) bk = ok, bi = oi;
      }
      if (bi == 0x7fffffff) break;  // k > E cannot happen (checked on the host); defensive
      if ((bi & 31) == lane) taken |= 1u << (bi >> 5);
      if (lane == 0) atomicExch(&s_hint[bi], 1);
    }
  }
  __syncthreads();
  if (warp != 0) return;
  // the resident predicted experts are reserved too: placing one prediction never evicts another
  for (int e = lane; e < p.E; e += 32)
    if (s_hint[e] && p.expert_slot[e] >= 0) s_reserved[p.expert_slot[e]] = 1;
  __syncwarp();
  const long long now = *p.step + 1;
  unsigned long long placed = 0, wasted = 0;
  int nc = 0;
  bool full = false;
  for (int e = 0; e < p.E && !full; ++e) {
    if (!s_hint[e] || p.expert_slot[e] >= 0) continue;  // same value in every lane (lane 0 writes after __syncwarp)
    const int best = warp_victim(s_slot_expert, s_used, s_reserved, p.N, lane);
    if (best < 0) {
      full = true;  // every slot already holds this call's prefetches
      continue;
    }
    if (lane == 0) {
      if (p.slot_prefetched[best]) ++wasted;  // an earlier prefetch there was never used
      p.slot_prefetched[best] = 1;
      take_slot(p, s_slot_expert, s_used, best, e, now, nc);
      s_reserved[best] = 1;
      ++placed;
    }
    __syncwarp();
  }
  for (int i = lane; i < p.N; i += 32) p.slot_expert[i] = s_slot_expert[i], p.slot_used[i] = s_used[i];
  if (lane == 0) {
    *p.step = now;
    *p.n_copies = nc;
    p.counters[3] += placed;
    p.counters[5] += wasted;
  }
}

constexpr int kCopyUnroll = 4;

// grid (chunks of an expert, copies): block (c, i) copies chunk c of copy i when i < n_copies.
__global__ void copy_kernel(const int* __restrict__ copies, const int* __restrict__ n_copies, const uint8_t* host,
                            uint8_t* slots, int64_t bytes, int64_t chunk, CopyTiming tm) {
  HLWQ_PDL_PREAMBLE();
  const int i = blockIdx.y, n = *n_copies;
  if (i >= n) return;
  if (threadIdx.x == 0) copy_span_begin(tm);
  const int e = copies[2 * i], s = copies[2 * i + 1];
  const int64_t b0 = int64_t(blockIdx.x) * chunk, b1 = b0 + chunk < bytes ? b0 + chunk : bytes;
  const uint4* src = reinterpret_cast<const uint4*>(host + int64_t(e) * bytes);
  uint4* dst = reinterpret_cast<uint4*>(slots + int64_t(s) * bytes);
  // kCopyUnroll independent loads in flight per thread before their stores: a read of host memory answers over
  // PCIe after ~1-2 µs, so the bytes in flight, not the SMs, bound a copy of a few experts
  const int64_t w1 = b1 / 16, step = int64_t(blockDim.x);
  for (int64_t w = b0 / 16 + threadIdx.x; w < w1; w += kCopyUnroll * step) {
    uint4 v[kCopyUnroll];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (w + u * step < w1) v[u] = src[w + u * step];
#pragma unroll
    for (int u = 0; u < kCopyUnroll; ++u)
      if (w + u * step < w1) dst[w + u * step] = v[u];
  }
  __syncthreads();
  if (threadIdx.x == 0) copy_span_end(tm, static_cast<unsigned long long>(gridDim.x) * unsigned(n));
}

constexpr int64_t kCopyChunk = 64 << 10;

}  // namespace

ExpertCacheDev make_expert_cache(int64_t E, int64_t n_slots, const ExpertLayout& layout, const uint8_t* host) {
  HLWQ_CHECK(E >= 1 && E <= kExpertCacheMaxE && n_slots >= 1 && n_slots <= E,
             "expert cache: {} slots for {} experts (1..E, E ≤ {})", n_slots, E, kExpertCacheMaxE);
  HLWQ_CHECK(layout.bytes % 16 == 0, "expert cache: expert size {} is not 16-byte aligned", layout.bytes);
  ExpertCacheDev c;
  c.E = E;
  c.n_slots = n_slots;
  c.layout = layout;
  c.host = host;
  c.slots = DeviceBuffer<uint8_t>(size_t(n_slots * layout.bytes), "expert cache slots");
  c.slot_expert = DeviceBuffer<int>(std::vector<int>(size_t(n_slots), -1), "expert cache slot map");
  c.expert_slot = DeviceBuffer<int>(std::vector<int>(size_t(E), -1), "expert cache expert map");
  c.slot_used = DeviceBuffer<long long>(std::vector<long long>(size_t(n_slots), 0), "expert cache recency");
  c.step = DeviceBuffer<long long>(std::vector<long long>(1, 0), "expert cache step");
  c.copies = DeviceBuffer<int>(size_t(2 * n_slots), "expert cache copies");
  c.n_copies = DeviceBuffer<int>(std::vector<int>(1, 0), "expert cache copy count");
  c.slot_prefetched = DeviceBuffer<unsigned char>(std::vector<unsigned char>(size_t(n_slots), 0),
                                                  "expert cache prefetch flags");
  c.pf_copies = DeviceBuffer<int>(size_t(2 * n_slots), "expert cache prefetch copies");
  c.pf_n = DeviceBuffer<int>(std::vector<int>(1, 0), "expert cache prefetch copy count");
  c.counters = DeviceBuffer<unsigned long long>(std::vector<unsigned long long>(9, 0), "expert cache counters");
  std::vector<unsigned long long> timing(kTimingWords, 0);
  timing[kSpanAdmit] = timing[kSpanPrefetch] = ~0ull;  // the earliest-start scratch starts above every stamp
  c.timing = DeviceBuffer<unsigned long long>(timing, "expert cache copy timing");
  return c;
}

ExpertCachePlan expert_cache_plan_of(ExpertCacheDev& c, const int* topk_ids, int64_t T, int64_t k,
                                     const ExpertTables& t, const CpuSplitArgs& cpu, bool joined_prefetch) {
  return ExpertCachePlan{topk_ids, int(T * k), int(c.E), int(c.n_slots), c.slot_expert.get(), c.expert_slot.get(),
                         c.slot_used.get(), c.step.get(), c.copies.get(), c.n_copies.get(), c.slot_prefetched.get(),
                         c.counters.get(), t, c.layout, c.host, c.slots.get(),
                         cpu.mode == CpuExperts::off ? CpuSplitArgs{} : cpu, c.timing.get(), joined_prefetch};
}

void expert_cache_plan(const ExpertCachePlan& p, cudaStream_t st) {
  plan_kernel<<<1, 32, 0, st>>>(p);
  HLWQ_CUDA_LAUNCH_CHECK("expert cache plan ({} ids, {} slots)", p.n_ids, p.N);
}

void expert_cache_admit(ExpertCacheDev& c, int64_t T, int64_t k, cudaStream_t st) {
  const int64_t max_copies = std::min<int64_t>(c.n_slots, T * k);
  const dim3 grid(unsigned((c.layout.bytes + kCopyChunk - 1) / kCopyChunk), unsigned(max_copies));
  copy_kernel<<<grid, 256, 0, st>>>(c.copies.get(), c.n_copies.get(), c.host, c.slots.get(), c.layout.bytes,
                                    kCopyChunk, CopyTiming{c.timing.get() + kSpanAdmit, c.counters.get(), true,
                                                           nullptr});
  HLWQ_CUDA_LAUNCH_CHECK("expert cache copies (up to {} experts of {} bytes)", max_copies, c.layout.bytes);
}

void expert_cache_step(ExpertCacheDev& c, const int* topk_ids, int64_t T, int64_t k, const ExpertTables& t,
                       cudaStream_t st, const CpuSplitArgs& cpu, bool joined_prefetch, bool copy_through) {
  if (T == 0) return;
  expert_cache_plan(expert_cache_plan_of(c, topk_ids, T, k, t, cpu, joined_prefetch), st);
  if (!copy_through) expert_cache_admit(c, T, k, st);  // else the step's expert kernel copies them
}

void expert_cache_prefetch(ExpertCacheDev& c, const float* logits, int64_t ld, int64_t T, int64_t k,
                           const ExpertTables& t, cudaStream_t st) {
  HLWQ_CHECK(T >= 1 && T <= kMaxPrefetchTokens && k >= 1 && k <= c.E && ld >= c.E,
             "expert cache prefetch: {} tokens (1..{}), top-{} of {} experts, row stride {}", T, kMaxPrefetchTokens, k,
             c.E, ld);
  ExpertCachePlan cache = expert_cache_plan_of(c, nullptr, 0, k, t);  // no step ids: the predictions are its own
  cache.copies = c.pf_copies.get(), cache.n_copies = c.pf_n.get();     // the prefetch's own admissions
  const PrefetchParams q{logits, int(ld), int(T), int(k), cache};
  prefetch_kernel<<<1, kPrefetchThreads, 0, st>>>(q);
  HLWQ_CUDA_LAUNCH_CHECK("expert cache prefetch plan ({} tokens, top-{}, {} slots)", T, k, c.n_slots);
}

void expert_cache_prefetch_copy(ExpertCacheDev& c, int64_t max_copies, cudaStream_t st) {
  max_copies = std::min<int64_t>(max_copies, c.n_slots);
  if (max_copies <= 0) return;
  const dim3 grid(unsigned((c.layout.bytes + kCopyChunk - 1) / kCopyChunk), unsigned(max_copies));
  copy_kernel<<<grid, 256, 0, st>>>(c.pf_copies.get(), c.pf_n.get(), c.host, c.slots.get(), c.layout.bytes,
                                    kCopyChunk, CopyTiming{c.timing.get() + kSpanPrefetch, c.counters.get(), false,
                                                           c.timing.get() + kTimePrefetchStart});
  HLWQ_CUDA_LAUNCH_CHECK("expert cache prefetch copies (up to {} experts of {} bytes)", max_copies, c.layout.bytes);
}

struct PlaceParams {
  ExpertTables t;
  ExpertLayout lay;
  PointedExperts e;
  bool begin_step;
  const uint8_t* host;
  uint8_t* slots;
  int* slot_expert;
  int* expert_slot;
  long long* slot_used;
  long long* step;
  unsigned char* slot_prefetched;
  unsigned long long* counters;
};

__global__ void place_kernel(PlaceParams p) {
  HLWQ_PDL_PREAMBLE();
  const int j = int(threadIdx.x);
  if (p.begin_step && j == 0) *p.step += 1;
  __syncthreads();
  if (j >= p.e.n) return;
  const long long now = *p.step;
  const int x = p.e.id[j], s = p.e.pos[j], old = p.slot_expert[s];
  if (old >= 0 && old != x) {
    p.expert_slot[old] = -1;
    point_at(p.t, p.lay, old, p.host + int64_t(old) * p.lay.bytes);
    if (p.slot_prefetched[s]) atomicAdd(&p.counters[5], 1ull);  // a prefetch evicted unused
  } else if (old == x && p.slot_prefetched[s]) {
    atomicAdd(&p.counters[4], 1ull);  // the first use of a prefetched expert
  }
  p.slot_prefetched[s] = 0;
  p.slot_expert[s] = x;
  p.expert_slot[x] = s;
  p.slot_used[s] = now;
  point_at(p.t, p.lay, x, p.slots + int64_t(s) * p.lay.bytes);
}

void expert_cache_place(ExpertCacheDev& c, const ExpertTables& t, const PointedExperts& e, bool begin_step,
                        cudaStream_t st) {
  HLWQ_CHECK(e.n >= 0 && e.n <= kMaxPointed, "expert cache: {} experts to place (at most {})", e.n, kMaxPointed);
  for (int j = 0; j < e.n; ++j)
    HLWQ_CHECK(e.id[j] >= 0 && e.id[j] < c.E && e.pos[j] >= 0 && e.pos[j] < c.n_slots, "expert cache: placing "
               "expert {} in slot {} ({} experts, {} slots)", e.id[j], e.pos[j], c.E, c.n_slots);
  if (e.n == 0 && !begin_step) return;
  const PlaceParams p{t, c.layout, e, begin_step, c.host, c.slots.get(), c.slot_expert.get(), c.expert_slot.get(),
                      c.slot_used.get(), c.step.get(), c.slot_prefetched.get(), c.counters.get()};
  place_kernel<<<1, kMaxPointed, 0, st>>>(p);
  HLWQ_CUDA_LAUNCH_CHECK("placing {} experts in the cache", e.n);
}

void expert_tables_point(const ExpertTables& t, const ExpertLayout& lay, const PointedExperts& e, const uint8_t* base,
                         cudaStream_t st) {
  HLWQ_CHECK(e.n >= 0 && e.n <= kMaxPointed, "expert tables: {} experts to point (at most {})", e.n, kMaxPointed);
  if (e.n == 0) return;
  point_kernel<<<1, kMaxPointed, 0, st>>>(t, lay, e, base);
  HLWQ_CUDA_LAUNCH_CHECK("pointing {} experts' table entries", e.n);
}

ExpertCacheCounters expert_cache_counters(const ExpertCacheDev& c) {
  const auto v = c.counters.download();
  return {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8]};
}

CopyThrough expert_cache_copy_through(ExpertCacheDev& c) {
  return CopyThrough{c.copies.get(), c.n_copies.get(), c.host, c.slots.get(), c.layout,
                     CopyTiming{c.timing.get() + kSpanAdmit, c.counters.get(), true, nullptr}};
}

}  // namespace hlwq::cuda
