// hlwq_bench_cuda_cublas: cuBLAS bf16 GEMV/GEMM (cublasGemmEx, fp32 compute, bf16 output) on the same Qwen3.6
// shapes and batches as hlwq_bench_cuda_kernels, with the same method (weights rotated past L2, graph replay,
// median), against the copy bandwidth measured in this run. A separate binary so that the kernel benchmark runs
// where libcublas is missing.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.cuh"

namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) hlwq::fail("cuBLAS {} failed: status {}", what, int(s));
}

}  // namespace

int main() {
  using namespace hlwq;
  try {
    cudaDeviceProp p{};
    HLWQ_CUDA_CHECK(cudaGetDeviceProperties(&p, 0), "device properties");
    cudaStream_t st;
    HLWQ_CUDA_CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "stream");
    const auto ceil = bench::measure_ceilings(st);
    const double copy = ceil.copy_kernel;
    std::printf("device %s; copy kernel %.0f GB/s, cudaMemcpy d2d %.0f GB/s, read kernel %.0f GB/s\n", p.name, copy,
                ceil.copy_memcpy, ceil.read);
    cublasHandle_t h;
    check(cublasCreate(&h), "create");
    check(cublasSetStream(h, st), "set stream");
    cuda::DeviceBuffer<uint8_t> wsp(size_t(64) << 20, "cublas workspace");
    check(cublasSetWorkspace(h, wsp.get(), wsp.size()), "workspace");
    struct Shape {
      int64_t out, in;
      const char* name;
    };
    for (Shape s : {Shape{512, 2048, "2048->512 (expert)"}, Shape{2048, 512, "512->2048 (down)"},
                    Shape{8192, 2048, "2048->8192"}, Shape{2048, 4096, "4096->2048"},
                    Shape{248320, 2048, "2048->248320 (lm_head)"}}) {
      const int64_t wbytes = s.out * s.in * 2;
      int R = int(std::max<int64_t>(1, (3 * int64_t(p.l2CacheSize) + wbytes - 1) / wbytes));
      std::vector<cuda::DeviceBuffer<uint16_t>> ws;
      for (int i = 0; i < R; ++i) {
        ws.emplace_back(size_t(s.out * s.in), "cublas W");
        bench::fill_bf16(ws.back().get(), s.out * s.in / 2, 300 + uint64_t(i));
      }
      cuda::DeviceBuffer<uint16_t> x(size_t(16 * s.in), "x"), y(size_t(16 * s.out), "y");
      bench::fill_bf16(x.get(), 16 * s.in / 2, 9);
      const float alpha = 1.f, beta = 0.f;
      for (int T : {1, 4, 16}) {
        const int n = std::max(R, 20);
        const double us = bench::time_graph(st, n, [&](int i) {
          check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(s.out), T, int(s.in), &alpha, ws[size_t(i % R)].get(),
                             CUDA_R_16BF, int(s.in), x.get(), CUDA_R_16BF, int(s.in), &beta, y.get(), CUDA_R_16BF,
                             int(s.out), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                "gemm");
        });
        const double bytes = double(wbytes) + double(T) * s.in * 2 + double(T) * s.out * 2;
        const double gbs = bytes / (us * 1e-6) / 1e9;
        std::printf("row %-26s | %-22s | %3d | %9.2f us | %7.0f GB/s | %5.1f %%\n", "cublas bf16 gemm", s.name, T, us,
                    gbs, 100.0 * gbs / copy);
        std::fflush(stdout);
      }
    }
    {  // the bf16 tensor-core ceiling: an 8192³ GEMM, random bf16 operands, fp32 accumulate
      const int n = 8192;
      cuda::DeviceBuffer<uint16_t> A(size_t(n) * n, "A"), B(size_t(n) * n, "B"), Cm(size_t(n) * n, "C");
      bench::fill_bf16(A.get(), int64_t(n) * n / 2, 11);
      bench::fill_bf16(B.get(), int64_t(n) * n / 2, 12);
      const float alpha = 1.f, beta = 0.f;
      const double us = bench::time_graph(st, 1, [&](int) {
        check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &alpha, A.get(), CUDA_R_16BF, n, B.get(), CUDA_R_16BF, n,
                           &beta, Cm.get(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "8192^3 gemm");
      });
      std::printf("cublas bf16 8192^3 gemm: %.0f us, %.0f TFLOP/s (tensor-core ceiling)\n", us,
                  2.0 * double(n) * n * n / (us * 1e-6) / 1e12);
    }
    cublasDestroy(h);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hlwq_bench_cuda_cublas: %s\n", e.what());
    return 1;
  }
  return 0;
}
