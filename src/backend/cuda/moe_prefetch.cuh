// MoePrefetcher: prefetch of the next MoE layer's predicted experts while the current layer computes (issue 8
// item 2, the Mixtral-offloading predictor). Inside moe_forward of layer l, right after l's own cache plan and
// copies: layer l+1's router GEMM on l's packed hidden state → expert_cache_prefetch (top-k per token, placement
// into l+1's LRU slots, tables and bookkeeping) on the compute stream; then a fork to one copy stream that moves
// the bytes host → slot; the join waits for them on the compute stream just before layer l+1's own plan. Fork and
// join are event record/wait pairs, so a recorded decode graph carries them as edges and replays them with no
// host involvement.
// Why no kernel races: the copy writes only layer l+1's slots chosen by the prefetch plan, whose last readers
// (l+1's GEMMs of the previous step) precede the fork in stream order; nothing reads l+1's slots or tables between
// the fork and the join (layer l's experts, l+1's mixer); l+1's plan runs after the join and sees every byte and
// every bookkeeping write. The hint reuses the MoE workspace's router-logits buffer, free after l's routing.
// Only batches of ≤ kMaxPrefetchTokens tokens prefetch (decode); a prefill's union of predictions would churn the
// cache. The host-side pending flags only decide which joins to record; each forward joins all it forks.
#pragma once
#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "backend/cuda/moe.cuh"

namespace hlwq::cuda {

class MoePrefetcher {
 public:
  explicit MoePrefetcher(int n_layers);
  ~MoePrefetcher();
  MoePrefetcher(const MoePrefetcher&) = delete;
  MoePrefetcher& operator=(const MoePrefetcher&) = delete;

  // A new batch: a prefetch left unjoined by a failed forward is waited for here (outside any recording).
  void begin_batch();
  // Prefetch into layer `layer` (which must have a cache) from x_tok, the packed [T, H] hidden state of the layer
  // before it; logits: scratch of [T, L.router.out] floats.
  void issue(int layer, const MoeLayerDev& L, const uint32_t* x_tok, int64_t T, float* logits, cudaStream_t st);
  // Whether a prefetch into layer `layer` was issued in this forward and not yet joined.
  bool pending(int layer) const { return pending_[size_t(layer)] != 0; }
  // Before layer `layer`'s plan: st waits for the copies of a prefetch issued into it in this forward, if any.
  void join(int layer, cudaStream_t st);

 private:
  void release();  // destroys what exists (the constructor may fail halfway)
  cudaStream_t copy_ = nullptr;
  std::vector<cudaEvent_t> fork_, done_;  // [n_layers]
  std::vector<uint8_t> pending_;          // [n_layers]
};

}  // namespace hlwq::cuda
