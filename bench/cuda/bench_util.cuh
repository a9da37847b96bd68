// Shared pieces of the CUDA kernel benchmarks: a device-side random fill (inputs are generated on the GPU, not
// uploaded), the device-to-device copy ceiling, and graph-replay timing (N launches captured once, the median
// over replays of the per-launch time, after warm-up).
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"

namespace hlwq::bench {

__global__ void fill_kernel(uint32_t* p, int64_t n, uint64_t seed, uint32_t and_mask, uint32_t or_mask) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    uint64_t z = seed + uint64_t(i) * 0x9E3779B97F4A7C15ull;  // splitmix64
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    p[i] = (uint32_t(z ^ (z >> 31)) & and_mask) | or_mask;
  }
}

// Random 32-bit words; masks shape them (e.g. bf16 pairs of small magnitude, positive fp32 scales).
inline void fill_random(void* p, int64_t words, uint64_t seed, uint32_t and_mask = ~0u, uint32_t or_mask = 0u) {
  fill_kernel<<<1024, 256>>>(static_cast<uint32_t*>(p), words, seed, and_mask, or_mask);
  HLWQ_CUDA_LAUNCH_CHECK("fill_random {} words", words);
}
// bf16 pairs with exponent forced to [2^-8, 2^-1): random sign and mantissa, never NaN/inf.
inline void fill_bf16(void* p, int64_t words, uint64_t seed) { fill_random(p, words, seed, 0x87FF87FFu, 0x3C003C00u); }
// positive fp32 around 1e-2
inline void fill_scales(void* p, int64_t words, uint64_t seed) { fill_random(p, words, seed, 0x007FFFFFu, 0x3C000000u); }

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Microseconds per launch: `launch(i)` for i < n captured into one graph on stream st, replayed `reps` times after
// `warm` replays; median replay time / n.
inline double time_graph(cudaStream_t st, int n, const std::function<void(int)>& launch, int warm = 3, int reps = 15) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  HLWQ_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "capture");
  for (int i = 0; i < n; ++i) launch(i);
  HLWQ_CUDA_CHECK(cudaStreamEndCapture(st, &g), "end capture");
  HLWQ_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0), "instantiate");
  cudaEvent_t a, b;
  HLWQ_CUDA_CHECK(cudaEventCreate(&a), "event");
  HLWQ_CUDA_CHECK(cudaEventCreate(&b), "event");
  for (int i = 0; i < warm; ++i) HLWQ_CUDA_CHECK(cudaGraphLaunch(ge, st), "warm-up replay");
  std::vector<double> us;
  for (int i = 0; i < reps; ++i) {
    HLWQ_CUDA_CHECK(cudaEventRecord(a, st), "record");
    HLWQ_CUDA_CHECK(cudaGraphLaunch(ge, st), "replay");
    HLWQ_CUDA_CHECK(cudaEventRecord(b, st), "record");
    HLWQ_CUDA_CHECK(cudaEventSynchronize(b), "sync");
    float ms = 0;
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b), "elapsed");
    us.push_back(double(ms) * 1e3 / n);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(ge);
  cudaGraphDestroy(g);
  return median(us);
}

__global__ void copy_kernel(const uint4* __restrict__ a, uint4* __restrict__ b, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    b[i] = a[i];
}
__global__ void read_kernel(const uint4* __restrict__ a, int64_t n, uint32_t* sink) {
  uint32_t x = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = a[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x12345678u) *sink = x;  // keeps the loads alive
}

struct Ceilings {
  double copy_kernel, copy_memcpy, read;  // GB/s; copies count bytes read + written
};

// Device memory ceilings on 2 GiB buffers, median of 15 graph replays each: a copy kernel (16-byte loads and
// stores, grid-stride, 4 blocks of 256 per SM), cudaMemcpyAsync device-to-device, and a read-only kernel.
inline Ceilings measure_ceilings(cudaStream_t st) {
  const size_t bytes = size_t(2) << 30;
  const int64_t n = int64_t(bytes / 16);
  cuda::DeviceBuffer<uint8_t> a(bytes, "copy src"), b(bytes, "copy dst");
  cuda::DeviceBuffer<uint32_t> sink(1, "sink");
  fill_random(a.get(), int64_t(bytes / 4), 1);
  int sms = 0;
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0), "SM count");
  Ceilings c{};
  const double us_k = time_graph(st, 1, [&](int) {
    copy_kernel<<<sms * 4, 256, 0, st>>>(reinterpret_cast<const uint4*>(a.get()), reinterpret_cast<uint4*>(b.get()), n);
  });
  const double us_m = time_graph(st, 1, [&](int) {
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, st), "copy");
  });
  const double us_r = time_graph(st, 1, [&](int) {
    read_kernel<<<sms * 4, 256, 0, st>>>(reinterpret_cast<const uint4*>(a.get()), n, sink.get());
  });
  c.copy_kernel = 2.0 * double(bytes) / (us_k * 1e-6) / 1e9;
  c.copy_memcpy = 2.0 * double(bytes) / (us_m * 1e-6) / 1e9;
  c.read = double(bytes) / (us_r * 1e-6) / 1e9;
  return c;
}

}  // namespace hlwq::bench
