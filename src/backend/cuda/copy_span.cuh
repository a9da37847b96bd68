// How a launch that copies experts host → slot reports its time on the device clock (expert_cache_dev.cuh: copy
// time and its exposed part), shared by the cache's copy kernel and the fused expert MLP's copy-through
// (moe_fused.cuh): each copying block stamps its start and end into a span scratch, and the last of the launch's
// `live` copying blocks adds the span to the counters and resets the scratch for the next launch.
#pragma once

namespace hlwq::cuda {

// span [3]: the scratch (earliest start, latest end, blocks done; reset by the last block); counters [9]: the
// cache's (7: copy ns, 8: exposed copy ns); exposed: the compute stream waits for all of it; start_end: where to
// leave the span's start and end for a join (2 words, or null).
struct CopyTiming {
  unsigned long long* span;
  unsigned long long* counters;
  bool exposed;
  unsigned long long* start_end;
};

}  // namespace hlwq::cuda

// The device side (host translation units include the struct through expert_cache_dev.cuh).
#if defined(__CUDACC__)
#include "backend/cuda/device_clock.cuh"

namespace hlwq::cuda {

// By one thread of a copying block, before its first copy.
__device__ __forceinline__ void copy_span_begin(const CopyTiming& tm) { atomicMin(&tm.span[0], device_ns()); }

// By one thread of a copying block after the whole block's copies (a __syncthreads before it); live: the copying
// blocks of the launch.
__device__ __forceinline__ void copy_span_end(const CopyTiming& tm, unsigned long long live) {
  atomicMax(&tm.span[1], device_ns());
  __threadfence();
  if (atomicAdd(&tm.span[2], 1ull) != live - 1) return;
  // the last block: every other block's stamps are in (each fenced before counting itself done)
  const unsigned long long t0 = atomicAdd(&tm.span[0], 0ull), t1 = atomicAdd(&tm.span[1], 0ull);
  const unsigned long long ns = t1 > t0 ? t1 - t0 : 0;
  tm.counters[7] += ns;
  if (tm.exposed) tm.counters[8] += ns;
  if (tm.start_end) tm.start_end[0] = t0, tm.start_end[1] = t1;
  tm.span[0] = ~0ull, tm.span[1] = 0, tm.span[2] = 0;
}

}  // namespace hlwq::cuda
#endif
