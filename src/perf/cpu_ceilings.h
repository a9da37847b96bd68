// The CPU's memory ceilings measured now, for benchmarks to report fractions of (DESIGN habit 11): GB/s of a
// multi-threaded read-only sum and of a memcpy copy (bytes read + written) over buffers far larger than the
// last-level cache, each the median of several timed runs after one warm-up, with the OpenMP threads in use.
#pragma once
#include <cstdint>

namespace hlwq {

struct CpuCeilings {
  double read_gbs = 0, copy_gbs = 0;
  int threads = 0;
  uint64_t buffer_bytes = 0;
};

// bytes: size of each of the two buffers (≥ 1 MiB); repeats ≥ 1.
CpuCeilings measure_cpu_ceilings(uint64_t bytes = uint64_t(1) << 30, int repeats = 5);

}  // namespace hlwq
