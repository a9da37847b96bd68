// The device's global nanosecond clock (%globaltimer: one time base for every SM and stream, so stamps taken by
// kernels on different streams compare). Used by the expert cache's copy-time counters (expert_cache_dev.cuh),
// which must work inside a replayed CUDA graph, where host-side events cannot be read per step.
#pragma once

namespace hlwq::cuda {

__device__ __forceinline__ unsigned long long device_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

}  // namespace hlwq::cuda
