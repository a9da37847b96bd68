// The router GEMM and the slot plan of a one-token step in one launch (bf16 router, Hopper and later). One
// thread-block cluster computes the logits [E + 1] (the experts' gate rows and the shared gate) over its blocks,
// gathers them in its last block through distributed shared memory, and that block's first warp builds the plan
// (route_token.cuh) — in place of the router GEMM and the one-warp routing kernel, whose kernel boundary, second
// launch and logits round trip sat on the decode step's path once a MoE layer (bench/cuda/NOTES.md, nineteenth
// session). The router's weights are loaded before the programmatic wait: nothing writes them, and their DRAM round
// trip then overlaps the norm before. With an expert cache, the same warp then runs the cache's plan of the step
// (expert_cache_plan.cuh) where a plan kernel would follow.
// Every logit is one 16-row tile's row summed in one fixed order (warp w takes the k-units u ≡ w mod 8, each in
// increasing u, and the warps' partials are added in warp order), whatever the cluster size, so every launch gives
// the same bits and a step with an expert cache routes as the all-resident one does. The order is not the router
// GEMM's (gemm.cuh), so logits may differ from it in their last bits.
// Dimension legend: E experts, k active, S shared parts, H hidden (the router's columns).
#pragma once
#include <cstdint>
#include <iterator>

#include <cuda_runtime_api.h>

#include "backend/cuda/expert_cache_dev.cuh"
#include "backend/cuda/gemm.cuh"
#include "backend/cuda/moe_route.cuh"

namespace hlwq::cuda {

// Cluster sizes the launch can take, preferred first (every size gives the same bits).
constexpr int kRouterOneClusters[] = {16, 8};

struct RouterOne {
  int cluster = 0;  // the size a launch takes; 0: the router GEMM and moe_route run instead
  bool available() const { return cluster > 0; }
};
// Whether the one-launch form runs for this router here: bf16 [E + (S > 0), H], E ≤ 512, k + S ≤ 32, a device and a
// binary of sm_90 or later that co-schedules one of kRouterOneClusters.
RouterOne plan_router_one(const PackedLinear& router, int64_t E, int64_t k, int64_t S);

// For the token in slot 0 of x_tok (xfrag, router.in_pad columns): logits [router.out] = router · x (fp32, also
// stored at `logits`), then moe_route's plan of one token (ties, NaN, a trace's route_ids, done_at: moe_route.cuh).
// r must be available(); cluster: 0 = r.cluster, else one of kRouterOneClusters that runs here (tests).
// cache: the layer's expert cache plan for this step (expert_cache_plan_of with ids = plan.topk_ids, T = 1), run by
// the warp that routed, in place of expert_cache_plan's launch — the same plan, one kernel boundary fewer. Not
// after a prefetch join (that plan reads the routing's stamp, taken before the join waits).
void router_one(const RouterOne& r, const PackedLinear& router, const uint32_t* x_tok, float* logits, int64_t E,
                int64_t k, int64_t S, const MoePlan& plan, int64_t max_tiles, cudaStream_t st, int cluster = 0,
                const ExpertCachePlan* cache = nullptr);

}  // namespace hlwq::cuda
