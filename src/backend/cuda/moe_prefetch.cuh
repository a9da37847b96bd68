// MoePrefetcher: prefetch of the next MoE layer's predicted experts while the current layer computes (issue 8
// item 2, the Mixtral-offloading predictor). Inside moe_forward of layer l, right after l's own cache plan and
// copies, a fork to the copy stream, which runs there, off the compute stream's path: layer l+1's router GEMM on
// l's packed hidden state (x_tok) into the prefetcher's own logits → expert_cache_prefetch (top-k per token,
// placement into l+1's LRU slots, tables and bookkeeping) → the copies host → slot. Two joins: before the compute
// stream next writes x_tok (the post-attention norm or pack of layer l+1: release_input), and just before layer
// l+1's own plan (join). Fork and joins are event record/wait pairs, so a recorded decode graph carries them as
// edges and replays them with no host involvement.
// Why no kernel races: the branch reads x_tok, which nothing writes before release_input; it writes its own
// logits, and layer l+1's slots, tables and bookkeeping, whose last readers (l+1's plan and GEMMs of the previous
// step) precede the fork in stream order and whose next reader (l+1's plan) follows the join.
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
  // For n_layers layers whose routers have router_rows rows.
  MoePrefetcher(int n_layers, int64_t router_rows);
  ~MoePrefetcher();
  MoePrefetcher(const MoePrefetcher&) = delete;
  MoePrefetcher& operator=(const MoePrefetcher&) = delete;

  // A new batch: a prefetch left unjoined by a failed forward is waited for here (outside any recording).
  void begin_batch();
  // Prefetch into layer `layer` (which must have a cache) from x_tok, the packed [T, H] hidden state of the layer
  // before it, forked from st.
  void issue(int layer, const MoeLayerDev& L, const uint32_t* x_tok, int64_t T, cudaStream_t st);
  // Before st writes the x_tok an issued prefetch reads: st waits for that read.
  void release_input(cudaStream_t st);
  // Whether a prefetch into layer `layer` was issued in this forward and not yet joined.
  bool pending(int layer) const { return pending_[size_t(layer)] != 0; }
  // Before layer `layer`'s plan: st waits for the copies of a prefetch issued into it in this forward, if any.
  void join(int layer, cudaStream_t st);

 private:
  void release();  // destroys what exists (the constructor may fail halfway)
  cudaStream_t copy_ = nullptr;
  DeviceBuffer<float> logits_;                   // [kMaxPrefetchTokens, router_rows]
  std::vector<cudaEvent_t> fork_, read_, done_;  // [n_layers]
  int reading_ = -1;                             // the layer whose prefetch may still read x_tok (−1: none)
  std::vector<uint8_t> pending_;                 // [n_layers]
};

}  // namespace hlwq::cuda
