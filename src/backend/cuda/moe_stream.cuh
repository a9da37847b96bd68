// MoeLayerStreamer: whole-layer expert streaming for large batches (issue 8 item 2; why, and the plan it carries
// out: moe/layer_stream.h). With an expert cache, a batch of at least min_tokens tokens (a prefill chunk) does not
// run the cache's per-step plan: after routing, the host reads the step's slot plan and the cache's residency
// (one stream synchronisation per MoE layer and batch — the only host round trip of the offloaded forward, and
// only for batches this large: its bubble is tens of µs against a layer that moves hundreds of MB), plans the
// rounds, and then per round:
//   copy stream:   wait until the buffer's previous round finished → copy its experts host → staging buffer
//                  (cudaMemcpyAsync from pinned memory: the copy engine, no SMs; adjacent experts in one copy)
//   compute stream: wait for that copy → point the staged experts' table entries at the buffer → the round's
//                  expert GEMMs (mlp: a contiguous tile range) → point the entries back at the host copies →
//                  mark the buffer free
// Two buffers alternate across rounds and layers, so round r+1's copy overlaps round r's GEMMs. Experts already
// resident are read from their slots and count as hits. The cache still learns from the step, by its own LRU rule
// (moe/layer_stream.h, plan_stream_admission): the resident experts used become the most recent, and the staged
// ones, most tokens first, are admitted into empty or least recently used slots — copied device to device from the
// staging buffer right after their round, so admission costs no PCIe (measured: without it a cold cache stayed
// cold through the prefill, and decode started at 88 % hits where 94-100 % were reachable).
// Copy time (issue 8 item 4): each round's copies are bracketed by timing events on the copy stream, and the compute
// stream records when it reaches the round's wait; a copy that ends after that moment was waited for by that much
// (exposed), the rest ran under earlier rounds' GEMMs. The events are read at the next streamed layer's host sync,
// or by settle().
// Numerics: the staging copy is byte-exact and every launch keeps the whole step's launch shape (gemm.cuh,
// launch_tiles), so a streamed step's logits equal the cache path's and the all-resident run's bit for bit.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/expert_cache_dev.cuh"

namespace hlwq::cuda {

struct LayerStreamCounters {
  int64_t layers = 0;    // (layer, batch) pairs that streamed
  int64_t rounds = 0;    // rounds that copied experts
  int64_t staged = 0;    // experts copied into staging (each crossed PCIe once)
  int64_t resident = 0;  // needed experts found in a cache slot (hits)
  int64_t admitted = 0;  // staged experts also admitted into the cache (device to device)
  int64_t copy_ns = 0;    // time the rounds' copies ran (copy engine)
  int64_t exposed_ns = 0;  // the part of it the compute stream waited for
};

class MoeLayerStreamer {
 public:
  // lay: the packed expert layout (B bytes each); E routed experts per layer; max_tiles: the MoE workspace's slot
  // plan size; batches of ≥ min_tokens (≥ 1) tokens stream; S staging slots per buffer (1..kMaxPointed).
  MoeLayerStreamer(const ExpertLayout& lay, int64_t E, int64_t max_tiles, int64_t min_tokens, int S);
  ~MoeLayerStreamer();
  MoeLayerStreamer(const MoeLayerStreamer&) = delete;
  MoeLayerStreamer& operator=(const MoeLayerStreamer&) = delete;

  bool wants(int64_t T) const { return T >= min_tokens_; }
  int64_t min_tokens() const { return min_tokens_; }
  int slots_per_buffer() const { return S_; }
  int64_t staging_bytes() const { return int64_t(staging_.bytes()); }
  // The counters, with the copy times of rounds still in flight folded in (waits for them: outside any recording).
  const LayerStreamCounters& settle();

  // Runs the expert MLPs of a routed step of cache `c` whose grouped tables are `t`: tile_mat [tiles] is the step's
  // slot plan on the device (written on st); mlp(first_tile, n_tiles) enqueues the GEMMs of a tile range on st.
  void run(ExpertCacheDev& c, const ExpertTables& t, const int* tile_mat, int64_t tiles, cudaStream_t st,
           const std::function<void(int64_t, int64_t)>& mlp);

 private:
  void release();  // destroys what exists (the constructor may fail halfway)
  // Timing events of one round: on the compute stream when it reaches the wait; on the copy stream before and
  // after the copies (the compute stream waits for `done`).
  struct RoundEvents {
    cudaEvent_t reach = nullptr, start = nullptr, done = nullptr;
  };
  RoundEvents& next_round_events();  // a free entry of the pool (created on first use)
  void fold_round_times();           // adds the pool's recorded rounds to the counters; they must be complete

  ExpertLayout lay_;
  int64_t E_, max_tiles_, min_tokens_;
  int S_;
  DeviceBuffer<uint8_t> staging_;  // [2][S][B]
  PinnedBuffer plan_;  // [max_tiles] tile_mat, [E] expert_slot, [E ≥ N] slot_expert: read back per streamed layer
  PinnedBuffer used_;  // [E ≥ N] slot_used, read back with them
  cudaStream_t copy_ = nullptr;
  cudaEvent_t free_[2] = {nullptr, nullptr};    // buffer b's last round's GEMMs are done
  std::vector<RoundEvents> rounds_;             // the pool: entries [0, n_recorded_) were recorded since the last fold
  size_t n_recorded_ = 0;
  int next_ = 0;                                // the buffer the next round uses
  LayerStreamCounters n_;
};

}  // namespace hlwq::cuda
