// The expert cache's plan of one step (expert_cache_dev.cuh) as device code, for the kernels that run it: the plan
// kernel (one warp) and the one-token router launch (moe_router_one.cu), whose routing warp plans the cache right
// after the routing, so a one-token step with a cache has no kernel boundary between routing and cache plan. The walk is
// sequential by definition (each miss sees the slots earlier misses took): one warp, lane 0 writing; the stage may
// be spread over a block and must be ordered before the walk by a barrier.
#pragma once
#include "backend/cuda/expert_cache_dev.cuh"

namespace hlwq::cuda {

__device__ inline void point_at(const ExpertTables& t, const ExpertLayout& lay, int e, const uint8_t* base) {
  t.gu_q[e] = reinterpret_cast<const uint32_t*>(base + lay.gu_q);
  t.dn_q[e] = reinterpret_cast<const uint32_t*>(base + lay.dn_q);
  t.gu_s[e] = lay.int4 ? reinterpret_cast<const float*>(base + lay.gu_s) : nullptr;
  t.dn_s[e] = lay.int4 ? reinterpret_cast<const float*>(base + lay.dn_s) : nullptr;
}
__device__ inline void point_at(const ExpertCachePlan& p, int e, const uint8_t* base) { point_at(p.t, p.lay, e, base); }

// The victim among the unpinned slots, the same for every lane: an empty one first (lowest index), else the least
// recently used (lowest index on ties); −1 when every slot is pinned. The ExpertCache policy's pick_victim.
__device__ inline int warp_victim(const int* s_slot_expert, const long long* s_used, const unsigned char* s_pinned,
                                  int N, int lane) {
  int best = -1;
  long long best_used = 0;
  bool best_empty = false;
  for (int s = lane; s < N; s += 32) {
    if (s_pinned[s]) continue;
    const bool empty = s_slot_expert[s] < 0;
    const bool better = best < 0 || (empty && !best_empty) || (empty == best_empty && !empty && s_used[s] < best_used);
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
  __syncwarp();  // every lane's reads of the slot state above come before the caller's lane-0 writes
  return best;
}

// Lane 0: expert e takes slot `best` (its occupant, if any, pointed back at its host copy), used at `now`, its table
// entries pointed at the slot, and the copy listed as admission nc (then advanced). slot_expert, used: the staged
// state.
__device__ inline void take_slot(const ExpertCachePlan& p, int* slot_expert, long long* used, int best, int e,
                                 long long now, int& nc) {
  const int old = slot_expert[best];
  if (old >= 0) {
    p.expert_slot[old] = -1;
    point_at(p, old, p.host + int64_t(old) * p.lay.bytes);
  }
  slot_expert[best] = e;
  p.expert_slot[e] = best;
  used[best] = now;
  point_at(p, e, p.slots + int64_t(best) * p.lay.bytes);
  p.copies[2 * nc] = e;
  p.copies[2 * nc + 1] = best;
  ++nc;
}

// The slot state a plan works on, in shared memory (9.7 KB).
struct ExpertCachePlanSmem {
  int slot_expert[kExpertCacheMaxE];
  long long used[kExpertCacheMaxE];
  unsigned char pinned[kExpertCacheMaxE];
  unsigned char seen[kExpertCacheMaxE];
  int order[kExpertCacheMaxE];
  unsigned char hit[kExpertCacheMaxE];  // order[j] was resident when the step began
};

// Thread `tid` of `n`: stages the slot state and clears the step's marks (the request set, the CPU's marks).
__device__ inline void expert_cache_plan_stage(const ExpertCachePlan& p, ExpertCachePlanSmem& s, int tid, int n) {
  for (int i = tid; i < p.N; i += n) s.slot_expert[i] = p.slot_expert[i], s.used[i] = p.slot_used[i], s.pinned[i] = 0;
  for (int i = tid; i < p.E; i += n) s.seen[i] = 0;
  if (p.cpu.mark)
    for (int i = tid; i < p.E; i += n) p.cpu.mark[i] = 0;
}

// One warp (every lane, warp-uniform control flow), after the stage: pins the hits, places the misses, rewrites
// the tables, the maps and the counters, and lists the admissions in copies / n_copies.
__device__ inline void expert_cache_plan_walk(const ExpertCachePlan& p, ExpertCachePlanSmem& s, int lane) {
  const long long now = *p.step + 1;
  unsigned long long hits = 0, loads = 0, streamed = 0, pf_hits = 0, pf_wasted = 0, cpu_only = 0;
  int nc = 0;
  // Hits first, in request order, pinning every resident expert before a miss picks a victim. The warp takes 32
  // requests at a time: a request is new when no earlier lane of the batch holds its id (__match_any_sync) and no
  // earlier batch saw it; new ones get their order positions by a ballot prefix, and their residency is looked up
  // by all lanes at once (the lookups were one dependent global load after another when lane 0 walked alone).
  // Every value below that decides control flow is warp-uniform (ballots and shared memory after __syncwarp).
  int n = 0;
  for (int b = 0; b < p.n_ids; b += 32) {
    const int i = b + lane;
    const int e = i < p.n_ids ? p.ids[i] : -1;
    const bool valid = e >= 0 && e < p.E;
    const unsigned same = __match_any_sync(0xffffffffu, valid ? e : -1 - lane);  // invalid lanes match nobody
    const bool fresh = valid && (__ffs(same) - 1) == lane && !s.seen[e];
    const unsigned ballot = __ballot_sync(0xffffffffu, fresh);
    __syncwarp();  // every lane read s.seen before any lane marks it
    bool hit = false;
    if (fresh) {
      const int j = n + __popc(ballot & ((1u << lane) - 1));
      s.seen[e] = 1;
      s.order[j] = e;
      const int sl = p.expert_slot[e];
      hit = sl >= 0;
      s.hit[j] = hit;
      if (hit) {  // distinct experts hold distinct slots: no two lanes write one slot
        s.pinned[sl] = 1;
        s.used[sl] = now;
        if (p.slot_prefetched[sl]) ++pf_hits, p.slot_prefetched[sl] = 0;
      }
    }
    hits += __popc(__ballot_sync(0xffffffffu, hit));
    n += __popc(ballot);
    __syncwarp();  // this round's marks in s.seen come before the next round's reads (ballots order no memory)
  }
  for (int o = 16; o > 0; o >>= 1) pf_hits += __shfl_xor_sync(0xffffffffu, pf_hits, o);  // lanes counted their own
  __syncwarp();
  const int misses = n - int(hits);  // the CPU takes the last cpu_split_count of them (cpu_split.h)
  const int first_cpu = p.cpu.mark ? misses - cpu_split_count(p.cpu.mode, misses, p.cpu.costs) : misses;
  int miss = 0;  // misses so far (the same in every lane)
  for (int j = 0; j < n; ++j) {
    if (s.hit[j]) continue;  // fixed for the step: a hit is pinned, so no miss of the walk evicts it
    const int e = s.order[j];
    const bool on_cpu = miss++ >= first_cpu;
    if (on_cpu && lane == 0) p.cpu.mark[e] = 1;
    if (on_cpu && p.cpu.mode != CpuExperts::all) {  // auto: computed on the CPU, never copied, no slot
      if (lane == 0) ++cpu_only;
      __syncwarp();
      continue;
    }
    const int best = warp_victim(s.slot_expert, s.used, s.pinned, p.N, lane);
    if (lane == 0) {
      if (best < 0) {
        if (!on_cpu) ++streamed;  // every slot is pinned by this step: read in place from host memory
      } else {
        take_slot(p, s.slot_expert, s.used, best, e, now, nc);
        s.pinned[best] = 1;
        if (p.slot_prefetched[best]) ++pf_wasted, p.slot_prefetched[best] = 0;
        ++loads;
      }
    }
    __syncwarp();
  }
  for (int i = lane; i < p.N; i += 32) p.slot_expert[i] = s.slot_expert[i], p.slot_used[i] = s.used[i];
  if (lane == 0) {
    *p.step = now;
    *p.n_copies = nc;
    p.counters[0] += hits;
    p.counters[1] += loads;
    p.counters[2] += streamed;
    p.counters[4] += pf_hits;
    p.counters[5] += pf_wasted;
    p.counters[6] += cpu_only;
    if (p.joined_prefetch) {  // the prefetch copy's part after the compute stream reached the join was waited for
      const unsigned long long reach = p.timing[kTimeRouteDone], start = p.timing[kTimePrefetchStart],
                               end = p.timing[kTimePrefetchEnd], from = reach > start ? reach : start;
      if (end > from) p.counters[8] += end - from;
      p.timing[kTimePrefetchEnd] = 0;  // a prefetch with nothing to copy stamps nothing
    }
  }
}

}  // namespace hlwq::cuda
