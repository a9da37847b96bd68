// CPU read and copy bandwidth with all OpenMP threads (see cpu_ceilings.h). Work is split in 1 MiB chunks, first
// touched by the thread that later reads them (NUMA placement), scheduled statically so each thread keeps its own.
#include "perf/cpu_ceilings.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "core/error.h"

namespace hlwq {
namespace {

using u64x2 = uint64_t __attribute__((vector_size(16)));  // one SSE2 register (GCC/Clang vector extension)

inline void keep(uint64_t v) { asm volatile("" : : "r"(v)); }  // keeps the read loop's result alive

template <class F>
double median_gbs(int repeats, double bytes_moved, F&& f) {
  f();  // warm-up
  std::vector<double> gbs;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    gbs.push_back(bytes_moved / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / 1e9);
  }
  std::sort(gbs.begin(), gbs.end());
  return gbs[gbs.size() / 2];
}

}  // namespace

CpuCeilings measure_cpu_ceilings(uint64_t bytes, int repeats) {
  HLWQ_CHECK(bytes >= (uint64_t(1) << 20) && repeats >= 1, "CPU ceilings: buffers of {} bytes (≥ 1 MiB), {} repeats "
             "(≥ 1)", bytes, repeats);
  const int64_t n = int64_t(bytes / 8);
  std::unique_ptr<uint64_t[]> a(new uint64_t[size_t(n)]), b(new uint64_t[size_t(n)]);  // [n] each
  constexpr int64_t kChunk = int64_t(1) << 17;  // uint64s per work item (1 MiB)
  const int64_t n_chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < n_chunks; ++c)
    for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i) a[size_t(i)] = uint64_t(i), b[size_t(i)] = 0;

  CpuCeilings r;
  r.threads = omp_get_max_threads();
  r.buffer_bytes = uint64_t(n) * 8;
  const double nb = double(n) * 8;
  r.copy_gbs = median_gbs(repeats, 2 * nb, [&] {
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const int64_t i0 = c * kChunk;
      std::memcpy(b.get() + i0, a.get() + i0, size_t(std::min(n - i0, kChunk)) * 8);
    }
  });
  r.read_gbs = median_gbs(repeats, nb, [&] {
    uint64_t total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
    for (int64_t c = 0; c < n_chunks; ++c) {
      const uint64_t* p = a.get() + c * kChunk;
      const int64_t m = std::min(n - c * kChunk, kChunk);
      // four independent 16-byte sums: one scalar chain does not keep a core's loads busy
      u64x2 s0{}, s1{}, s2{}, s3{};
      int64_t i = 0;
      for (; i + 8 <= m; i += 8) {
        u64x2 v0, v1, v2, v3;
        std::memcpy(&v0, p + i, 16), std::memcpy(&v1, p + i + 2, 16);
        std::memcpy(&v2, p + i + 4, 16), std::memcpy(&v3, p + i + 6, 16);
        s0 += v0, s1 += v1, s2 += v2, s3 += v3;
      }
      const u64x2 s = s0 + s1 + s2 + s3;
      total += s[0] + s[1];
      for (; i < m; ++i) total += p[i];
    }
    keep(total);
  });
  return r;
}

}  // namespace hlwq
