// hlwq_bench_cuda_links: what one dependent link of the decode step's chain costs, measured three ways, to decide
// whether a persistent decode kernel would pay before one is built (bench/cuda/NOTES.md, twenty-second session:
// 60 % of the speed of light where experts hit needs ≤ 2 µs a link; the step's links cost 1.7 to 12.8 µs today).
//
// A link: every block reads the whole vector the previous link wrote (n floats, as each block of a decode GEMM reads
// all of x), sums it, and writes its share of the next vector: y[j] = x[j] + 2^-20 · (sum + w_b), where w_b is the
// sum of the block's weights of this link (`--weights`: 32 KB a block, from DRAM, independent of the chain — a
// decode GEMM's slice; tiny: none). A chain of N links runs as
//   kernels     N launches of G blocks in one graph whose edges are programmatic (the engine's decode graph); the
//               weights are loaded before the PDL wait (an early read)
//   plain       the same graph with plain edges
//   persistent  one cooperative launch of G blocks, links separated by a grid barrier (cooperative_groups'
//               grid.sync); link i + 1's weights are loaded before link i's barrier
//   cluster     one launch of G ≤ 16 blocks of one cluster, links separated by the cluster barrier
// Each variant's last vector must equal the kernels' bit for bit (the same sums in the same order), so a barrier
// that orders too little shows as a mismatch, and the benchmark fails.
// Prints "row links | variant | G | weights | µs a link" for G in {1, 16, 66, 132, 264}.
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "backend/cuda/block_reduce.cuh"
#include "backend/cuda/cluster_launch.h"
#include "bench_util.cuh"

namespace hlwq {
namespace {

namespace cg = cooperative_groups;

constexpr int kThreads = 256;
constexpr int kN = 2048;                // the vector: Qwen3.6's hidden size
constexpr int kPer = kN / kThreads;     // its elements a thread reads
constexpr int kW = 8;                   // uint4 of weights a thread a link (32 KB a block) with --weights
constexpr int kLinks = 400;             // about a decode step's kernels (40 layers of ~10)

struct Weights {
  const uint4* w = nullptr;  // [links][G][kW · kThreads] uint4; null: tiny links
};

__device__ __forceinline__ void load_weights(const Weights& wt, int link, uint4 (&r)[kW]) {
  if (!wt.w) return;
  const uint4* p = wt.w + (int64_t(link) * gridDim.x + blockIdx.x) * (kW * kThreads);
#pragma unroll
  for (int k = 0; k < kW; ++k) r[k] = __ldg(p + k * kThreads + threadIdx.x);
}

__device__ __forceinline__ float weight_sum(const uint4 (&r)[kW]) {
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < kW; ++k)
    s += __uint_as_float(r[k].x) + __uint_as_float(r[k].y) + __uint_as_float(r[k].z) + __uint_as_float(r[k].w);
  return s;
}

// One link: x, written by other blocks, is read past the L1 (__ldcg), which no barrier here invalidates.
__device__ __forceinline__ void link_body(const float* x, float* y, const uint4 (&r)[kW], bool weights,
                                          float* scratch) {
  float v[kPer];
#pragma unroll
  for (int k = 0; k < kPer; ++k) v[k] = __ldcg(x + threadIdx.x + k * kThreads);
  float s = 0.f;
#pragma unroll
  for (int k = 0; k < kPer; ++k) s += v[k];
  if (weights) s += weight_sum(r);
  s = cuda::block_sum(s, scratch);
  for (int j = blockIdx.x + int(gridDim.x) * threadIdx.x; j < kN; j += int(gridDim.x) * kThreads)
    y[j] = __ldcg(x + j) + s * 0x1p-20f;
}

__global__ void __launch_bounds__(kThreads) link_kernel(const float* x, float* y, Weights wt, int link) {
  HLWQ_PDL_EARLY_READS("this link's weights, which no kernel writes");
  __shared__ float scratch[32];
  uint4 r[kW];
  load_weights(wt, link, r);
  HLWQ_PDL_PREAMBLE();
  link_body(x, y, r, wt.w != nullptr, scratch);
}

// The chain inside one launch: links separated by sync(); link i + 1's weights are loaded before link i's barrier.
// buf: [2][kN], link i reads half i % 2 and writes the other.
template <typename Sync>
__device__ __forceinline__ void chain(float* buf, const Weights& wt, int links, Sync sync) {
  __shared__ float scratch[32];
  uint4 r[kW];
  load_weights(wt, 0, r);
  for (int i = 0; i < links; ++i) {
    uint4 next[kW];
    if (i + 1 < links) load_weights(wt, i + 1, next);
    link_body(buf + (i & 1) * kN, buf + ((i + 1) & 1) * kN, r, wt.w != nullptr, scratch);
    sync();
#pragma unroll
    for (int k = 0; k < kW; ++k) r[k] = next[k];
  }
}

__global__ void __launch_bounds__(kThreads) persistent_kernel(float* buf, Weights wt, int links) {
  HLWQ_PDL_PREAMBLE();
  cg::grid_group grid = cg::this_grid();
  chain(buf, wt, links, [&] { grid.sync(); });
}

__global__ void __launch_bounds__(kThreads) cluster_kernel(float* buf, Weights wt, int links) {
  HLWQ_PDL_PREAMBLE();
  cg::cluster_group cluster = cg::this_cluster();
  chain(buf, wt, links, [&] { cluster.sync(); });
}

std::vector<float> result(const cuda::DeviceBuffer<float>& buf, int links) {
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "the chain");
  std::vector<float> h(kN);
  HLWQ_CUDA_CHECK(cudaMemcpy(h.data(), buf.get() + (links & 1) * kN, kN * sizeof(float), cudaMemcpyDeviceToHost),
                  "read the chain's result");
  return h;
}

void reset(cuda::DeviceBuffer<float>& buf) {
  bench::fill_random(buf.get(), 2 * kN, 7, 0x007FFFFFu, 0x3F800000u);  // [1, 2): never zero
  HLWQ_CUDA_CHECK(cudaDeviceSynchronize(), "fill");
}

void row(const char* variant, int G, bool weights, double us_link) {
  std::printf("row links | %-10s | %3d | %-7s | %7.2f us a link\n", variant, G, weights ? "32 KB" : "tiny", us_link);
  std::fflush(stdout);
}

void check_same(const std::vector<float>& ref, const std::vector<float>& got, const char* variant, int G) {
  if (std::memcmp(ref.data(), got.data(), ref.size() * sizeof(float)) != 0)
    throw std::runtime_error(std::string(variant) + " at " + std::to_string(G) +
                             " blocks: the chain's result differs from the kernels' (a barrier orders too little)");
}

void bench_links(int G, bool weights, cudaStream_t st) {
  cuda::DeviceBuffer<float> buf(2 * kN, "links vector");
  cuda::DeviceBuffer<uint4> wbuf(weights ? size_t(kLinks) * G * kW * kThreads : 1, "links weights");
  Weights wt;
  if (weights) {
    bench::fill_random(wbuf.get(), int64_t(wbuf.size()) * 4, 11, 0x007FFFFFu, 0x3F000000u);  // [0.5, 1)
    wt.w = wbuf.get();
  }
  auto chain = [&](int) {
    for (int i = 0; i < kLinks; ++i) {
      link_kernel<<<unsigned(G), kThreads, 0, st>>>(buf.get() + (i & 1) * kN, buf.get() + ((i + 1) & 1) * kN, wt, i);
      HLWQ_CUDA_LAUNCH_CHECK("link kernel {} of {} blocks", i, G);
    }
  };
  reset(buf);
  bench::time_graph(st, 1, chain, 0, 1, true);  // one replay from the start: the reference
  const std::vector<float> ref = result(buf, kLinks);
  row("kernels", G, weights, bench::time_graph(st, 1, chain, 3, 15, true) / kLinks);
  row("plain", G, weights, bench::time_graph(st, 1, chain, 3, 15, false) / kLinks);

  int per_sm = 0, sms = 0, dev = 0;
  HLWQ_CUDA_CHECK(cudaGetDevice(&dev), "device");
  HLWQ_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "SM count");
  HLWQ_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_kernel, kThreads, 0), "occupancy");
  if (G <= per_sm * sms) {
    auto launch = [&](int) {
      cudaLaunchAttribute a{};
      a.id = cudaLaunchAttributeCooperative;
      a.val.cooperative = 1;
      cudaLaunchConfig_t cfg{};
      cfg.gridDim = dim3(unsigned(G));
      cfg.blockDim = dim3(kThreads);
      cfg.stream = st;
      cfg.attrs = &a;
      cfg.numAttrs = 1;
      HLWQ_CUDA_CHECK(cudaLaunchKernelEx(&cfg, persistent_kernel, buf.get(), wt, kLinks), "persistent, {} blocks", G);
    };
    reset(buf);
    launch(0);
    check_same(ref, result(buf, kLinks), "persistent", G);
    row("persistent", G, weights, bench::time_eager(st, [&] { launch(0); }, 15) / kLinks);
  }
  if (G >= 2 && G <= 16) {
    HLWQ_CUDA_CHECK(cudaFuncSetAttribute(cluster_kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
                    "cluster size {}", G);
    if (cuda::co_scheduled_clusters(cluster_kernel, G, kThreads, 0) > 0) {
      auto launch = [&](int) {
        const cuda::ClusterLaunch l(G, dim3(unsigned(G)), kThreads, 0, st);
        HLWQ_CUDA_CHECK(cudaLaunchKernelEx(&l.cfg, cluster_kernel, buf.get(), wt, kLinks), "cluster of {}", G);
      };
      reset(buf);
      launch(0);
      check_same(ref, result(buf, kLinks), "cluster", G);
      row("cluster", G, weights, bench::time_eager(st, [&] { launch(0); }, 15) / kLinks);
    }
  }
}

}  // namespace
}  // namespace hlwq

int main() {
  using namespace hlwq;
  try {
    cudaDeviceProp p{};
    HLWQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "device properties");
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    std::printf("device %s, %d SMs; a chain of %d links of a %d-float vector, %d threads a block\n", p.name,
                p.multiProcessorCount, kLinks, kN, kThreads);
    const int half = p.multiProcessorCount / 2;
    for (const bool weights : {false, true})
      for (const int G : {1, 16, half, p.multiProcessorCount, 2 * p.multiProcessorCount}) bench_links(G, weights, st);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_links: %s\n", e.what());
    return 1;
  }
  return 0;
}
