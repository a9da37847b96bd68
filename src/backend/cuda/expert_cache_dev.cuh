// The GPU expert cache of one MoE layer (SPEC §7), run by the GPU itself inside the layer's launch sequence, so a
// step never waits on the host and the decode step stays one CUDA graph. Every routed expert lives in pinned,
// device-mapped host memory (expert_store.h); n_slots device slots per layer hold copies of some of them. The
// grouped expert kernels find each matrix through a pointer table (GroupedLinear): an entry points at the
// expert's slot when it is resident, else at its host copy, which the kernels then read over PCIe in place (the
// policy's "streamed" experts: no staging buffer, no extra copy).
//
// Per step, after routing: expert_cache_step (at one token the router's own launch, moe_router_one.cuh) plans with
// the policy of src/moe/expert_cache (kLru) — hits first, each pinned for the step; then misses in request order
// take the least recently used unpinned slot (empty slots first, ties to the lower index); a miss with no unpinned
// slot left is streamed — and rewrites the pointer table; then one launch copies the admitted experts host → slot
// — or, where the fused expert kernel runs the step (INT4, sm_90+, ≤ 8 tokens, no CPU split: moe_fused.cuh), that
// kernel copies them itself, each admitted expert's tile reading its host copy while it computes and writing the
// slot (copy-through: the copy overlaps that tile's compute instead of preceding the launch). Everything is on the
// compute stream in order:
// a slot is overwritten only after every earlier kernel that read it finished, and the GEMMs of the step read it
// only after its copy (the seed's eviction bug cannot happen). The copy costs the same PCIe bytes as reading that
// expert in place once; later steps then read it from device memory.
// "Request order" is the order of first appearance in the step's top-k ids, row-major [T, k].
//
// Prefetch (issue 8 item 2; moe_prefetch.cuh orchestrates it): while layer l computes, expert_cache_prefetch runs
// on the prefetch's copy stream, forked right after layer l's own plan: it takes layer l+1's router logits on layer
// l's hidden state, their top-k per token, and places the distinct predicted experts (ascending id, the order the CPU
// provider gives ExpertCache::prefetch) that are not resident into layer l+1's least recently used slots —
// exactly ExpertCache::prefetch under kLru: no slot placed earlier in the same call or holding a predicted expert
// is reused, and none is pinned,
// since layer l+1 has no open step before its own plan. It rewrites l+1's tables and bookkeeping at once; the
// bytes follow on the same stream (expert_cache_prefetch_copy), joined back before layer l+1's plan, which is the
// first thing that reads l+1's slots or tables. Recency is a per-layer clock that both the plan and the prefetch
// advance, so a prefetched slot is more recent than anything older and less recent than the step that follows,
// as under the CPU policy's global clock. Counters: a hit on a prefetched slot before any other use is a
// prefetch hit; evicting (or re-prefetching over) one never used is a wasted prefetch.
//
// With CPU experts (cpu_split.h: --cpu-experts all|auto) the plan also decides, after the hits, which misses the
// CPU computes: the last cpu_split_count(...) misses in request order are marked in `mark` [E]; under auto they
// take no slot and no copy (their table entries stay on the host copies, which the grouped kernels then skip:
// cpu_experts.cuh), under all they are still admitted when a slot is free.
// Copy time (issue 8 item 4), on the device clock (device_clock.cuh) so that it works in a replayed graph: each copy
// launch measures its own span (first block's start to last block's end; copy_span.cuh) and adds it to copy_ns. An
// admission copy runs on the compute stream, which waits for all of it: its span is also exposed (a copy-through's
// span, its copying tiles' start to end, includes their compute). A prefetch copy runs on its own
// stream; the part of it after the compute stream reached the join (the routing kernel of the layer stamps that
// moment, moe_route.cuh) is exposed, the rest was hidden by compute (a copy that had not even started by then counts
// from its start: exposed time never exceeds copy time). Misses read in place by the expert kernels are
// not copies (their PCIe time is inside those kernels and counted in bytes only).
// Dimension legend: T tokens, k active experts, E routed experts, N slots, B bytes per expert (16-byte aligned).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/copy_span.cuh"
#include "backend/cuda/device_buffer.h"
#include "moe/cpu_split.h"

namespace hlwq::cuda {

// One expert packed for the kernels (weight_pack.h): its gate_up and down matrices' shapes, and the byte offsets
// of their four arrays inside its B bytes (host copy and slot alike).
struct ExpertLayout {
  bool int4 = true;                                 // has fp32 group scales: INT4 or HLWQ; else bf16 (no scales)
  int hlwq_bits = 0;                                // > 0: HLWQ codes of that width (weight_pack.h)
  int64_t gu_out = 0, gu_in = 0, gu_out_pad = 0, gu_in_pad = 0;
  int64_t dn_out = 0, dn_in = 0, dn_out_pad = 0, dn_in_pad = 0;
  int64_t bytes = 0;                                // B
  int64_t gu_q = 0, gu_s = 0, dn_q = 0, dn_s = 0;   // gate_up weights / scales, down weights / scales
};

// Counters, accumulated on the device (read with expert_cache_counters).
struct ExpertCacheCounters {
  unsigned long long hits = 0, loads = 0, streamed = 0;
  unsigned long long prefetched = 0, prefetch_hits = 0, prefetch_wasted = 0;
  unsigned long long cpu_only = 0;  // misses computed on the CPU without a copy (--cpu-experts auto)
  unsigned long long copy_ns = 0, copy_exposed_ns = 0;  // time copies ran, and the part the compute stream waited
};

struct ExpertCacheDev {
  int64_t E = 0, n_slots = 0;
  ExpertLayout layout;
  const uint8_t* host = nullptr;  // device-visible pointer to this layer's host copies [E][B]
  DeviceBuffer<uint8_t> slots;    // [N][B]
  DeviceBuffer<int> slot_expert;  // [N] −1 = empty
  DeviceBuffer<int> expert_slot;  // [E] −1 = not resident
  DeviceBuffer<long long> slot_used;  // [N] the layer's clock at the last use (a step or a prefetch)
  DeviceBuffer<long long> step;       // [1] the layer's clock: +1 per plan and per prefetch
  DeviceBuffer<int> copies;           // [N] (expert, slot) pairs to copy this step, as 2 ints each (so [2N])
  DeviceBuffer<int> n_copies;         // [1]
  DeviceBuffer<unsigned char> slot_prefetched;  // [N] filled by a prefetch and not used since
  DeviceBuffer<int> pf_copies;        // [2N] the last prefetch's (expert, slot) pairs
  DeviceBuffer<int> pf_n;             // [1]
  DeviceBuffer<unsigned long long> counters;  // [9] hits, loads, streamed, prefetched, prefetch hits, wasted,
                                              // cpu_only, copy ns, exposed copy ns
  DeviceBuffer<unsigned long long> timing;    // [kTimingWords] stamps and launch-span scratch (ExpertCacheTiming)
};
// Words of ExpertCacheDev::timing: per copy kind the span scratch of the launch in flight (earliest start, latest
// end, blocks done), the routing's stamp before a prefetch join, and the span of the prefetch copy it joins.
enum ExpertCacheTiming : int { kSpanAdmit = 0, kSpanPrefetch = 3, kTimeRouteDone = 6, kTimePrefetchStart = 7,
                               kTimePrefetchEnd = 8, kTimingWords = 9 };

// A cache of n_slots (1 ≤ n_slots ≤ E ≤ 512) over host copies at `host`; every expert starts on the host.
ExpertCacheDev make_expert_cache(int64_t E, int64_t n_slots, const ExpertLayout& layout, const uint8_t* host);

// The pointer tables the grouped kernels read (entries [0, E) are the routed experts).
struct ExpertTables {
  const uint32_t** gu_q;
  const float** gu_s;
  const uint32_t** dn_q;
  const float** dn_s;
};

// Which misses go to the CPU (mode off: none; mark: device [E], rewritten every step).
struct CpuSplitArgs {
  CpuExperts mode = CpuExperts::off;
  CpuSplitCosts costs;
  uint8_t* mark = nullptr;
};

inline constexpr int kExpertCacheMaxE = 512;

// What one step's plan reads and writes (device pointers into an ExpertCacheDev, the tables, the CPU split): the
// arguments of the plan kernel, and of the one-token router launch that runs the same plan (moe_router_one.cuh).
struct ExpertCachePlan {
  const int* ids;  // [n_ids] the step's routed ids, row-major [T, k]
  int n_ids, E, N;
  int* slot_expert;
  int* expert_slot;
  long long* slot_used;
  long long* step;
  int* copies;
  int* n_copies;
  unsigned char* slot_prefetched;
  unsigned long long* counters;
  ExpertTables t;
  ExpertLayout lay;
  const uint8_t* host;
  uint8_t* slots;
  CpuSplitArgs cpu;
  unsigned long long* timing = nullptr;  // ExpertCacheTiming words
  bool joined_prefetch = false;          // the plan runs right after a prefetch join (expert_cache_step)
};

// The plan of a step for the routed ids [T, k] (device). joined_prefetch: the stream has just joined a prefetch
// copy into this layer, and the routing stamped kTimeRouteDone.
ExpertCachePlan expert_cache_plan_of(ExpertCacheDev& c, const int* topk_ids, int64_t T, int64_t k,
                                     const ExpertTables& t, const CpuSplitArgs& cpu = {}, bool joined_prefetch = false);
// Runs the plan (one warp): rewrites the tables and lists the admissions.
void expert_cache_plan(const ExpertCachePlan& p, cudaStream_t st);
// Copies the last plan's admissions host → slot (up to min(N, T·k) of them).
void expert_cache_admit(ExpertCacheDev& c, int64_t T, int64_t k, cudaStream_t st);

// Plans the step for the routed ids [T, k] (device), rewrites the tables and copies the admitted experts.
// copy_through: no copy launch; the step's expert kernel copies the admitted experts itself while it computes
// (expert_cache_copy_through). Only where that kernel has a tile for every admitted expert: no CPU split.
void expert_cache_step(ExpertCacheDev& c, const int* topk_ids, int64_t T, int64_t k, const ExpertTables& t,
                       cudaStream_t st, const CpuSplitArgs& cpu = {}, bool joined_prefetch = false,
                       bool copy_through = false);

// The last plan's admissions for a kernel that copies them itself (moe_fused.cuh): a tile whose expert is among
// them reads the expert's host copy and writes its slot instead of reading the table's slot, which is not filled
// yet. Its time goes to the same counters as the copy launch's (all of it exposed).
struct CopyThrough {
  const int* copies = nullptr;  // [2N] (expert, slot) pairs; null: no copy-through
  const int* n_copies = nullptr;
  const uint8_t* host = nullptr;  // [E][B]
  uint8_t* slots = nullptr;       // [N][B]
  ExpertLayout layout;
  CopyTiming timing{};
};
CopyThrough expert_cache_copy_through(ExpertCacheDev& c);

// Prefetch plan (see above): logits fp32 [T, ld] are this cache's layer's router (columns [0, E)) applied to the
// previous layer's hidden state; the top-k of each row (NaN as −inf, ties to the lower id) are the predictions.
// Places them, rewrites the tables `t`, and leaves the copies for expert_cache_prefetch_copy. T ≤ 64.
void expert_cache_prefetch(ExpertCacheDev& c, const float* logits, int64_t ld, int64_t T, int64_t k,
                           const ExpertTables& t, cudaStream_t st);
// The last prefetch plan's copies host → slot (up to max_copies = min(N, T·k) of them), on stream st.
void expert_cache_prefetch_copy(ExpertCacheDev& c, int64_t max_copies, cudaStream_t st);
inline constexpr int64_t kMaxPrefetchTokens = 64;

ExpertCacheCounters expert_cache_counters(const ExpertCacheDev& c);  // synchronizes the device

// Table entries of up to kMaxPointed experts pointed at other copies of them: expert id[j] at base + pos[j]·B
// (moe_stream.cuh: a staging slot for a round, then back to the expert's host copy, pos = id, base = host; or the
// cache slot an expert is placed in, pos = slot).
inline constexpr int kMaxPointed = 64;
struct PointedExperts {
  int n = 0;
  int id[kMaxPointed];
  int pos[kMaxPointed];
};
void expert_tables_point(const ExpertTables& t, const ExpertLayout& lay, const PointedExperts& e, const uint8_t* base,
                         cudaStream_t st);
// Expert id[j] is (now) in slot pos[j] — already resident there (a touch), or copied there device to device by
// the caller (moe_stream.cuh) — with the bookkeeping of the cache's plan: a different previous occupant is
// unmapped and pointed back at its host copy (a wasted prefetch if it was never used), the slot's recency is the
// layer's clock (advanced first when begin_step), a prefetched slot found in use counts as a prefetch hit, and
// the expert's table entries point at the slot.
void expert_cache_place(ExpertCacheDev& c, const ExpertTables& t, const PointedExperts& e, bool begin_step,
                        cudaStream_t st);

}  // namespace hlwq::cuda
