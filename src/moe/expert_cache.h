// ExpertCache: the pure placement policy of the GPU expert cache (SPEC §7). Per MoE layer there are n_slots GPU
// slots, each holding one expert's weights, and n_stream_buffers staging buffers that carry experts which are not
// cached; every expert lives in pinned host memory. The policy decides where each expert a step needs will be and
// which host→device copies that takes; it moves no bytes and includes no CUDA header. The copy stream (a later
// wave) executes the copies it returns, in order.
//
// A step of one layer is begin_step(layer, experts) … end_step(layer). Invariants, per layer:
//  - every slot a step uses (hit or load) is pinned from begin_step to end_step: neither that step's later misses
//    nor prefetch() may overwrite it, so an expert the step needs is never evicted under it (the seed's bug);
//  - two experts a step needs never share a slot, and a slot is reported as a hit only when it holds that id;
//  - slot_expert and the expert→slot map are exact inverses; an expert is resident in at most one slot;
//  - when a step needs more distinct experts than it can place in slots, the rest are streamed: the i-th streamed
//    expert goes through buffer i % n_stream_buffers in wave i / n_stream_buffers and is never cached;
//  - everything is deterministic: same calls, same plans (ties break by lower slot index, then request order).
// Contract with the copy stream: "slot s holds expert e" is true once every copy this cache returned for slot s
// has completed, so a step's compute must wait for the last copy into each slot it uses; a copy into slot s must
// wait for the compute of the last step that used s; a stream copy of wave w into buffer b must wait for the
// compute that consumed wave w − 1 of b. Not thread-safe: one owner per cache.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace hlwq {

// How a victim is chosen among the unpinned slots of a layer (empty slots always go first).
enum class ExpertEvictionPolicy {
  kLru,   // least recently used; every miss is admitted
  kLfru,  // least (aged) frequently used, ties by least recently used; a miss is admitted only if it is used at
          // least as often as the victim — otherwise it is streamed, which costs the same one copy this step
};

struct ExpertCacheConfig {
  int n_layers = 0;           // MoE layers
  int n_experts = 0;          // routed experts per layer
  int n_slots = 1;            // GPU slots per layer, ≥ 1 (may be < top-k or ≥ n_experts)
  int n_stream_buffers = 1;   // staging buffers per layer, ≥ 1, reused in waves
  int64_t bytes_per_expert = 0;  // bytes of one expert's weights (gate/up/down + scales), for copy statistics
  ExpertEvictionPolicy policy = ExpertEvictionPolicy::kLru;
  int lfru_half_life_steps = 256;  // kLfru: a layer's use counters halve every this many of its steps
};

enum class ExpertWhere : uint8_t {
  kSlotHit,   // already resident in slot `index`
  kSlotLoad,  // copied into slot `index` by this step's copies, then cached
  kStream,    // copied into stream buffer `index` in wave `wave`, not cached
};

struct ExpertPlacement {
  int32_t expert = -1;
  ExpertWhere where = ExpertWhere::kSlotHit;
  int32_t index = -1;  // slot (kSlotHit, kSlotLoad) or stream buffer (kStream)
  int32_t wave = 0;    // kStream: reuse round of buffer `index`; 0 otherwise
};

enum class ExpertCopyDst : uint8_t { kSlot, kStreamBuffer };

// One host→device copy of a whole expert.
struct ExpertCopy {
  int32_t expert = -1;
  ExpertCopyDst dst = ExpertCopyDst::kSlot;
  int32_t index = -1;  // slot or stream buffer
  int32_t wave = 0;    // kStreamBuffer: reuse round (see the stream-copy contract above); 0 for slots
};

struct StepPlan {
  int layer = -1;
  std::vector<ExpertPlacement> placements;  // one per requested expert, in request order
  std::vector<ExpertCopy> copies;           // the step's batch: slot loads first, then stream copies by wave
  int n_waves = 0;                          // stream waves (0 when nothing is streamed)
};

struct ExpertCacheStats {
  int64_t hits = 0;        // needed experts already resident
  int64_t misses = 0;      // needed experts loaded into a slot
  int64_t streamed = 0;    // needed experts copied through a stream buffer
  int64_t prefetched = 0;  // experts placed by prefetch()
  int64_t prefetch_hits = 0;    // hits on a slot a prefetch filled, before anything else used it
  int64_t prefetch_wasted = 0;  // prefetched experts evicted (or overwritten by a prefetch) before any use
  int64_t staged = 0;        // CUDA: needed experts of a large batch copied once through the whole-layer stream's
                             // staging buffers (moe_stream.cuh), never admitted into a slot
  int64_t bytes_copied = 0;  // (misses + streamed + prefetched + staged) · bytes_per_expert
  // Time expert copies ran (into slots, prefetches, staging), and the part of it not hidden by compute: the
  // compute waited for it (CPU: every copy is a synchronous memcpy, all exposed; CUDA: expert_cache_dev.cuh and
  // moe_stream.cuh say how each kind is timed). Misses read in place by the GPU kernels are not copies.
  int64_t copy_ns = 0, copy_exposed_ns = 0;
  int64_t steps = 0;         // begin_step calls
  // CUDA: forwards of ≤ 64 tokens (decode) that ran with the next layer's prefetch and without it (--moe-prefetch
  // auto switches between the two by timing them: moe/prefetch_arbiter.h; on: all with, off: all without)
  int64_t steps_prefetching = 0, steps_not_prefetching = 0;
  // Routed experts computed on the CPU (CUDA backend: --cpu-experts, --n-cpu-moe; cpu_split.h). cpu_only: needed
  // experts of a cache that the CPU computed instead of copying (a miss that crossed no PCIe); cpu_experts: every
  // (layer, step, expert) the CPU computed, for any reason; cpu_bytes: their weight bytes read from host memory;
  // cpu_ns: wall time of the CPU's work.
  // cpu_static: those of cpu_experts in --n-cpu-moe layers, which have no cache (not lookups).
  int64_t cpu_only = 0;
  int64_t cpu_experts = 0, cpu_static = 0, cpu_bytes = 0, cpu_ns = 0;

  // Counter by counter, every member (a phase's counters are the difference of two readings; a benchmark sums its
  // runs'). expert_cache.cpp lists the members once, and checks that the list covers the struct.
  ExpertCacheStats& operator+=(const ExpertCacheStats& d);
  ExpertCacheStats operator-(const ExpertCacheStats& a) const;

  int64_t lookups() const { return hits + misses + streamed + cpu_only + staged; }
  double hit_rate() const { return lookups() ? double(hits) / double(lookups()) : 0.0; }
  // Share of the routed expert computations (cache lookups and --n-cpu-moe layers' experts) done on the CPU.
  double cpu_share() const {
    const int64_t all = lookups() + cpu_static;
    return all ? double(cpu_experts) / double(all) : 0.0;
  }
};

class ExpertCache {
 public:
  explicit ExpertCache(const ExpertCacheConfig& cfg);

  // Plans one step of `layer`. experts: distinct ids in [0, n_experts) the step needs (for a batch, the union
  // over its tokens); order matters only for ties. Pins every slot it uses until end_step(layer). Throws on a
  // duplicate or out-of-range id, or when the layer already has an open step.
  StepPlan begin_step(int layer, std::span<const int32_t> experts);
  // Releases the pins of the layer's open step (the slots keep their experts). Throws if none is open.
  void end_step(int layer);

  // Up to max non-resident experts of `layer` with the highest use counts (ties: lower id), never unused ones.
  std::vector<int32_t> suggest_prefetch(int layer, int max) const;
  // Places non-resident experts into unpinned slots ahead of their step, in the given order, and returns the
  // copies to issue. Stops when no unpinned slot is left; under kLfru places an expert only where it is used
  // at least as often as the victim. Never touches a pinned slot, a slot placed earlier in the same call, or a
  // slot holding one of the given experts.
  std::vector<ExpertCopy> prefetch(int layer, std::span<const int32_t> experts);

  int32_t slot_expert(int layer, int slot) const;  // expert held by a slot, or -1 when empty
  int32_t expert_slot(int layer, int32_t expert) const;  // slot holding an expert, or -1
  bool slot_pinned(int layer, int slot) const;
  const ExpertCacheConfig& config() const { return cfg_; }
  const ExpertCacheStats& stats() const { return stats_; }

 private:
  struct Layer {
    std::vector<int32_t> slot_expert;   // [n_slots], -1 = empty
    std::vector<int32_t> expert_slot;   // [n_experts], -1 = not resident
    std::vector<uint64_t> slot_used;    // [n_slots] tick of the last use (step or prefetch)
    std::vector<uint8_t> slot_pinned;   // [n_slots] used by the open step (or reserved by the current prefetch)
    std::vector<uint8_t> slot_prefetched;  // [n_slots] filled by prefetch() and not used since
    std::vector<uint32_t> uses;         // [n_experts] aged demand-use counts (both policies keep them)
    int64_t steps = 0;
    bool in_step = false;
  };

  Layer& layer_at(int layer);
  const Layer& layer_at(int layer) const;
  // Best unpinned slot to (re)fill, or -1 when every slot is pinned.
  int pick_victim(const Layer& L) const;
  // kLfru admission: may `expert` replace the occupant of `slot`?
  bool admits(const Layer& L, int slot, int32_t expert) const;
  void place(Layer& L, int slot, int32_t expert);

  ExpertCacheConfig cfg_;
  std::vector<Layer> layers_;  // [n_layers]
  ExpertCacheStats stats_;
  uint64_t tick_ = 0;  // global use clock for recency
};

const char* expert_eviction_policy_name(ExpertEvictionPolicy p);

}  // namespace hlwq
