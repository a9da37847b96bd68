// Shared pieces of the CUDA kernel benchmarks: a device-side random fill (inputs are generated on the GPU, not
// uploaded), the device memory ceilings, graph-replay timing (N launches captured once, the median over replays of
// the per-launch time, after warm-up) and eager timing.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_buffer.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda/pdl_graph.h"
#include "backend/cuda_ceilings.h"

namespace hlwq::bench {

__global__ void fill_kernel(uint32_t* p, int64_t n, uint64_t seed, uint32_t and_mask, uint32_t or_mask) {
  HLWQ_PDL_PREAMBLE();
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
// `warm` replays; median replay time / n. pdl: kernel edges become programmatic (pdl_graph.h), as in the engine's
// decode graph — only for hlwq's own kernels, which start with HLWQ_PDL_PREAMBLE (never for cuBLAS).
inline double time_graph(cudaStream_t st, int n, const std::function<void(int)>& launch, int warm = 3, int reps = 15,
                         bool pdl = false) {
  cudaGraph_t g;
  cudaGraphExec_t ge;
  HLWQ_CUDA_CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal), "capture");
  for (int i = 0; i < n; ++i) launch(i);
  HLWQ_CUDA_CHECK(cudaStreamEndCapture(st, &g), "end capture");
  int dev = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "current device");
  cuda::make_kernel_edges_programmatic(g, dev, pdl);
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

// Microseconds of `f` launched without a graph (each launch's own overhead included): one warm-up call, then the
// median of `reps` calls timed with events on st.
inline double time_eager(cudaStream_t st, const std::function<void()>& f, int reps) {
  cudaEvent_t a, b;
  HLWQ_CUDA_CHECK(cudaEventCreate(&a), "event");
  HLWQ_CUDA_CHECK(cudaEventCreate(&b), "event");
  f();
  HLWQ_CUDA_CHECK(cudaStreamSynchronize(st), "warm-up");
  std::vector<double> us;
  for (int i = 0; i < reps; ++i) {
    HLWQ_CUDA_CHECK(cudaEventRecord(a, st), "record");
    f();
    HLWQ_CUDA_CHECK(cudaEventRecord(b, st), "record");
    HLWQ_CUDA_CHECK(cudaEventSynchronize(b), "sync");
    float ms = 0;
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&ms, a, b), "elapsed");
    us.push_back(double(ms) * 1e3);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  return median(us);
}

struct Ceilings {
  double copy_kernel, copy_memcpy, read;  // GB/s; copies count bytes read + written
};

// Device memory ceilings on 2 GiB buffers: the read and copy kernels of measure_cuda_ceilings (the same figures
// `hlwq bench` reports), and cudaMemcpyAsync device-to-device (the copy engine), median of 15 graph replays.
inline Ceilings measure_ceilings(cudaStream_t st) {
  const CudaCeilings k = measure_cuda_ceilings();
  const size_t bytes = size_t(2) << 30;
  cuda::DeviceBuffer<uint8_t> a(bytes, "copy src"), b(bytes, "copy dst");
  fill_random(a.get(), int64_t(bytes / 4), 1);
  const double us_m = time_graph(st, 1, [&](int) {
    HLWQ_CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, st), "copy");
  });
  return Ceilings{k.copy_gbs, 2.0 * double(bytes) / (us_m * 1e-6) / 1e9, k.read_gbs};
}

}  // namespace hlwq::bench
