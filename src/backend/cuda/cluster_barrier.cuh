// The split thread-block-cluster barrier (sm_90 and later) of the cluster kernels (moe_fused.cu, moe_router_one.cu):
// an arrive, work that needs no other block, then the wait.
#pragma once

namespace hlwq::cuda {

// Releases this thread's writes (shared::cluster and global) to the blocks that wait on this phase.
__device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release;" ::: "memory"); }
// Orders no memory access (a release arrive is a GPU-scope MEMBAR in SASS): for a first barrier, which only makes
// sure every block of the cluster runs before any block writes into another's shared memory.
__device__ __forceinline__ void cluster_arrive_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire;" ::: "memory"); }

}  // namespace hlwq::cuda
