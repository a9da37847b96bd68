// measure_cuda_ceilings (cuda_backend.h): the bandwidths benchmarks report their fractions of, measured in the same
// process. Kernels stream 16-byte words grid-stride with 4 blocks of 256 threads per SM (what saturates HBM on
// Ampere..Hopper); each figure is the median of 9 timed runs after one warm-up.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "backend/cuda/device_buffer.h"
#include "backend/cuda/pdl.cuh"
#include "backend/cuda_ceilings.h"

namespace hlwq {
namespace {

__global__ void copy_kernel(const uint4* __restrict__ a, uint4* __restrict__ b, int64_t n) {
  HLWQ_PDL_PREAMBLE();
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    b[i] = a[i];
}

__global__ void read_kernel(const uint4* __restrict__ a, int64_t n, uint32_t* sink) {
  HLWQ_PDL_PREAMBLE();
  uint32_t x = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const uint4 v = a[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (x == 0x12345678u) *sink = x;  // keeps the loads alive
}

// The bf16 tensor-core rate: every warp issues kTcChains independent mma.sync.m16n8k16 (bf16 inputs, fp32
// accumulation) per iteration on register operands, so nothing but the tensor cores limits it. This is the
// instruction hlwq's GEMMs use (gemm.cu); Hopper's asynchronous wgmma reaches higher (HOPPER.md), which this does
// not measure — the figure is the ceiling of the kernels as written, not of the chip.
constexpr int kTcChains = 8, kTcIters = 1024, kTcThreads = 128;
constexpr double kTcFlopsPerMma = 2.0 * 16 * 8 * 16;

__global__ void __launch_bounds__(kTcThreads) tc_kernel(float* sink) {
  HLWQ_PDL_PREAMBLE();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const uint32_t a = 0x3F803F80u ^ (threadIdx.x & 1u);  // bf16 pairs near 1.0: every sum stays finite
  float d[kTcChains][4] = {};
  for (int it = 0; it < kTcIters; ++it) {
#pragma unroll
    for (int c = 0; c < kTcChains; ++c)
      asm volatile(
          "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
          "{%0,%1,%2,%3};"
          : "+f"(d[c][0]), "+f"(d[c][1]), "+f"(d[c][2]), "+f"(d[c][3])
          : "r"(a), "r"(a), "r"(a), "r"(a), "r"(a), "r"(a));
  }
  float x = 0.f;
#pragma unroll
  for (int c = 0; c < kTcChains; ++c) x += d[c][0] + d[c][1] + d[c][2] + d[c][3];
  if (x == 1.2345f) *sink = x;  // keeps the results alive
#endif
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
  if (prop.major >= 8) {
    cuda::DeviceBuffer<float> sink(1, "ceilings: sink");
    const int blocks = prop.multiProcessorCount * 8;
    const double ms = median_ms(st, [&] {
      tc_kernel<<<blocks, kTcThreads, 0, st>>>(sink.get());
      HLWQ_CUDA_LAUNCH_CHECK("ceilings: tensor-core kernel");
    });
    const double mmas = double(blocks) * (kTcThreads / 32) * kTcIters * kTcChains;
    c.tc_bf16_tflops = mmas * kTcFlopsPerMma / (ms * 1e9);
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
