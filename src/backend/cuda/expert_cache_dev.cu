// The GPU expert cache (see expert_cache_dev.cuh). The plan is one warp: lane 0 walks the requests in order (the
// policy is sequential by definition: each miss sees the slots earlier misses took), the warp scans for victims.
// Slot state is staged in shared memory for the walk and written back at the end.
#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/pdl.cuh"

#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "core/error.h"

namespace hlwq::cuda {
namespace {

constexpr int kMaxE = 512;

struct PlanParams {
  const int* ids;
  int n_ids, E, N;
  int* slot_expert;
  int* expert_slot;
  long long* slot_used;
  long long* step;
  int* copies;
  int* n_copies;
  unsigned long long* counters;
  ExpertTables t;
  ExpertLayout lay;
  const uint8_t* host;
  uint8_t* slots;
  CpuSplitArgs cpu;
};

__device__ void point_at(const PlanParams& p, int e, const uint8_t* base) {
  p.t.gu_q[e] = reinterpret_cast<const uint32_t*>(base + p.lay.gu_q);
  p.t.dn_q[e] = reinterpret_cast<const uint32_t*>(base + p.lay.dn_q);
  p.t.gu_s[e] = p.lay.int4 ? reinterpret_cast<const float*>(base + p.lay.gu_s) : nullptr;
  p.t.dn_s[e] = p.lay.int4 ? reinterpret_cast<const float*>(base + p.lay.dn_s) : nullptr;
}

__global__ void plan_kernel(PlanParams p) {
  HLWQ_PDL_PREAMBLE();
  __shared__ int s_slot_expert[kMaxE];
  __shared__ long long s_used[kMaxE];
  __shared__ unsigned char s_pinned[kMaxE];
  __shared__ unsigned char s_seen[kMaxE];
  __shared__ int s_order[kMaxE];
  __shared__ int s_n, s_victim, s_first_cpu;
  const int lane = threadIdx.x;
  for (int i = lane; i < p.N; i += 32) s_slot_expert[i] = p.slot_expert[i], s_used[i] = p.slot_used[i], s_pinned[i] = 0;
  for (int i = lane; i < p.E; i += 32) s_seen[i] = 0;
  if (p.cpu.mark)
    for (int i = lane; i < p.E; i += 32) p.cpu.mark[i] = 0;
  __syncwarp();
  const long long now = *p.step + 1;
  unsigned long long hits = 0, loads = 0, streamed = 0, cpu_only = 0;
  int nc = 0;
  if (lane == 0) {
    *p.step = now;
    // hits first, in request order: pinning every resident expert before a miss picks a victim
    int n = 0;
    for (int i = 0; i < p.n_ids; ++i) {
      const int e = p.ids[i];
      if (e < 0 || e >= p.E || s_seen[e]) continue;
      s_seen[e] = 1;
      s_order[n++] = e;
      const int s = p.expert_slot[e];
      if (s >= 0) {
        s_pinned[s] = 1;
        s_used[s] = now;
        ++hits;
      }
    }
    s_n = n;
    const int misses = n - int(hits);  // the CPU takes the last cpu_split_count of them (cpu_split.h)
    s_first_cpu = p.cpu.mark ? misses - cpu_split_count(p.cpu.mode, misses, p.cpu.costs) : misses;
  }
  __syncwarp();
  const int n = s_n, first_cpu = s_first_cpu;
  int miss = 0;  // misses so far (the same in every lane)
  for (int j = 0; j < n; ++j) {
    const int e = s_order[j];
    if (p.expert_slot[e] >= 0) continue;  // a hit (same value for every lane: only lane 0 writes, below, after the scan)
    const bool on_cpu = miss++ >= first_cpu;
    if (on_cpu && lane == 0) p.cpu.mark[e] = 1;
    if (on_cpu && p.cpu.mode != CpuExperts::all) {  // auto: computed on the CPU, never copied, no slot
      if (lane == 0) ++cpu_only;
      __syncwarp();
      continue;
    }
    // victim: an empty unpinned slot first (lowest index), else the least recently used unpinned (lowest index)
    int best = -1;
    long long best_used = 0;
    bool best_empty = false;
    for (int s = lane; s < p.N; s += 32) {
      if (s_pinned[s]) continue;
      const bool empty = s_slot_expert[s] < 0;
      const bool better = best < 0 || (empty && !best_empty) ||
                          (empty == best_empty && !empty && s_used[s] < best_used);
      if (better) best = s, best_used = s_used[s], best_empty = empty;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const int ob = __shfl_xor_sync(0xffffffffu, best, o);
      const long long ou = __shfl_xor_sync(0xffffffffu, best_used, o);
      const bool oe = __shfl_xor_sync(0xffffffffu, int(best_empty), o) != 0;
      bool take;
      if (ob < 0) take = false;
      else if (best < 0) take = true;
      else if (oe != best_empty) take = oe;
      else if (!oe && ou != best_used) take = ou < best_used;
      else take = ob < best;
      if (take) best = ob, best_used = ou, best_empty = oe;
    }
    if (lane == 0) {
      if (best < 0) {
        if (!on_cpu) ++streamed;  // every slot is pinned by this step: read in place from host memory
      } else {
        const int old = s_slot_expert[best];
        if (old >= 0) {
          p.expert_slot[old] = -1;
          point_at(p, old, p.host + int64_t(old) * p.lay.bytes);
        }
        s_slot_expert[best] = e;
        p.expert_slot[e] = best;
        s_pinned[best] = 1;
        s_used[best] = now;
        point_at(p, e, p.slots + int64_t(best) * p.lay.bytes);
        p.copies[2 * nc] = e;
        p.copies[2 * nc + 1] = best;
        ++nc;
        ++loads;
      }
    }
    __syncwarp();
  }
  for (int i = lane; i < p.N; i += 32) p.slot_expert[i] = s_slot_expert[i], p.slot_used[i] = s_used[i];
  if (lane == 0) {
    *p.n_copies = nc;
    p.counters[0] += hits;
    p.counters[1] += loads;
    p.counters[2] += streamed;
    p.counters[3] += cpu_only;
  }
}

// grid (chunks of an expert, copies): block (c, i) copies chunk c of copy i when i < n_copies.
__global__ void copy_kernel(const int* __restrict__ copies, const int* __restrict__ n_copies, const uint8_t* host,
                            uint8_t* slots, int64_t bytes, int64_t chunk) {
  HLWQ_PDL_PREAMBLE();
  const int i = blockIdx.y;
  if (i >= *n_copies) return;
  const int e = copies[2 * i], s = copies[2 * i + 1];
  const int64_t b0 = int64_t(blockIdx.x) * chunk, b1 = b0 + chunk < bytes ? b0 + chunk : bytes;
  const uint4* src = reinterpret_cast<const uint4*>(host + int64_t(e) * bytes);
  uint4* dst = reinterpret_cast<uint4*>(slots + int64_t(s) * bytes);
  for (int64_t w = b0 / 16 + threadIdx.x; w < b1 / 16; w += blockDim.x) dst[w] = src[w];
}

constexpr int64_t kCopyChunk = 64 << 10;

}  // namespace

ExpertCacheDev make_expert_cache(int64_t E, int64_t n_slots, const ExpertLayout& layout, const uint8_t* host) {
  HLWQ_CHECK(E >= 1 && E <= kMaxE && n_slots >= 1 && n_slots <= E, "expert cache: {} slots for {} experts (1..E, E ≤ {})",
             n_slots, E, kMaxE);
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
  c.counters = DeviceBuffer<unsigned long long>(std::vector<unsigned long long>(4, 0), "expert cache counters");
  return c;
}

void expert_cache_step(ExpertCacheDev& c, const int* topk_ids, int64_t T, int64_t k, const ExpertTables& t,
                       cudaStream_t st, const CpuSplitArgs& cpu) {
  if (T == 0) return;
  const PlanParams p{topk_ids, int(T * k), int(c.E), int(c.n_slots), c.slot_expert.get(), c.expert_slot.get(),
                     c.slot_used.get(), c.step.get(), c.copies.get(), c.n_copies.get(), c.counters.get(), t,
                     c.layout, c.host, c.slots.get(), cpu.mode == CpuExperts::off ? CpuSplitArgs{} : cpu};
  plan_kernel<<<1, 32, 0, st>>>(p);
  HLWQ_CUDA_LAUNCH_CHECK("expert cache plan ({} ids, {} slots)", T * k, c.n_slots);
  const int64_t max_copies = std::min<int64_t>(c.n_slots, T * k);
  const dim3 grid(unsigned((c.layout.bytes + kCopyChunk - 1) / kCopyChunk), unsigned(max_copies));
  copy_kernel<<<grid, 256, 0, st>>>(c.copies.get(), c.n_copies.get(), c.host, c.slots.get(), c.layout.bytes,
                                    kCopyChunk);
  HLWQ_CUDA_LAUNCH_CHECK("expert cache copies (up to {} experts of {} bytes)", max_copies, c.layout.bytes);
}

ExpertCacheCounters expert_cache_counters(const ExpertCacheDev& c) {
  const auto v = c.counters.download();
  return {v[0], v[1], v[2], v[3]};
}

}  // namespace hlwq::cuda
