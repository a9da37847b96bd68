// measure_cuda_ceilings (cuda_backend.h): the bandwidths benchmarks report their fractions of, measured in the same
// process. Kernels stream 16-byte words grid-stride with 4 blocks of 256 threads per SM (what saturates HBM on
// Ampere..Hopper); each figure is the median of 9 timed runs after one warm-up.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda_ceilings.h"

namespace hlwq {
namespace {

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

// Median milliseconds of f() over 9 runs after a warm-up, timed with events on stream st.
template <typename F>
double median_ms(cudaStream_t st, F f) {
  cudaEvent_t a, b;
  HLWQ_CUDA_CHECK(cudaEventCreate(&a), "ceilings: event");
  HLWQ_CUDA_CHECK(cudaEventCreate(&b), "ceilings: event");
  f();
  std::vector<float> ms(9);
  for (float& m : ms) {
    HLWQ_CUDA_CHECK(cudaEventRecord(a, st), "ceilings: record");
    f();
    HLWQ_CUDA_CHECK(cudaEventRecord(b, st), "ceilings: record");
    HLWQ_CUDA_CHECK(cudaEventSynchronize(b), "ceilings: sync");
    HLWQ_CUDA_CHECK(cudaEventElapsedTime(&m, a, b), "ceilings: elapsed");
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return double(ms[ms.size() / 2]);
}

}  // namespace

CudaCeilings measure_cuda_ceilings(int device) {
  HLWQ_CHECK(cuda::cuda_device_count() > device, "no CUDA device {} to measure", device);
  HLWQ_CUDA_CHECK(cudaSetDevice(device), "device {}", device);
  CudaCeilings c;
  cudaDeviceProp prop{};
  HLWQ_CUDA_CHECK(cudaGetDeviceProperties(&prop, device), "device {} properties", device);
  c.device_name = prop.name;
  cudaStream_t st;
  HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "ceilings: stream");
  const size_t bytes = size_t(2) << 30;
  const int64_t n = int64_t(bytes / 16);
  {
    cuda::DeviceBuffer<uint8_t> a(bytes, "ceilings: source"), b(bytes, "ceilings: destination");
    cuda::DeviceBuffer<uint32_t> sink(1, "ceilings: sink");
    HLWQ_CUDA_CHECK(cudaMemsetAsync(a.get(), 1, bytes, st), "ceilings: fill");
    const int blocks = prop.multiProcessorCount * 4;
    const auto* src = reinterpret_cast<const uint4*>(a.get());
    const double copy_ms = median_ms(st, [&] {
      copy_kernel<<<blocks, 256, 0, st>>>(src, reinterpret_cast<uint4*>(b.get()), n);
      HLWQ_CUDA_LAUNCH_CHECK("ceilings: copy kernel");
    });
    const double read_ms = median_ms(st, [&] {
      read_kernel<<<blocks, 256, 0, st>>>(src, n, sink.get());
      HLWQ_CUDA_LAUNCH_CHECK("ceilings: read kernel");
    });
    c.copy_gbs = 2.0 * double(bytes) / (copy_ms * 1e6);
    c.read_gbs = double(bytes) / (read_ms * 1e6);
  }
  {
    const size_t hb = size_t(256) << 20;
    void* host = nullptr;
    HLWQ_CUDA_CHECK(cudaMallocHost(&host, hb), "ceilings: pinned host buffer of {} bytes", hb);
    cuda::DeviceBuffer<uint8_t> d(hb, "ceilings: PCIe destination");
    std::fill_n(static_cast<char*>(host), hb, 1);
    const double ms = median_ms(st, [&] {
      HLWQ_CUDA_CHECK(cudaMemcpyAsync(d.get(), host, hb, cudaMemcpyHostToDevice, st), "ceilings: host to device");
    });
    cudaFreeHost(host);
    c.h2d_pinned_gbs = double(hb) / (ms * 1e6);
  }
  cudaStreamDestroy(st);
  return c;
}

}  // namespace hlwq
