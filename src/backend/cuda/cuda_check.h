// Error checking for every CUDA runtime call and kernel launch (DESIGN habit 10): a failure throws hlwq::Error
// naming the call, the CUDA error string and a caller-supplied context ("int4_gemm 512x2048 T=4").
// Plain C++ header (no device code), includable from .cpp and .cu alike.
#pragma once
#include <cuda_runtime_api.h>

#include "core/error.h"

// HLWQ_CUDA_CHECK(call, "context {}", args...): throw when call does not return cudaSuccess.
#define HLWQ_CUDA_CHECK(call, ...)                                                                         \
  do {                                                                                                     \
    const cudaError_t hlwq_cuda_err_ = (call);                                                             \
    if (hlwq_cuda_err_ != cudaSuccess)                                                                     \
      ::hlwq::fail("CUDA: {} failed: {} ({}): {}", #call, cudaGetErrorString(hlwq_cuda_err_),              \
                   int(hlwq_cuda_err_), fmt::format(__VA_ARGS__));                                         \
  } while (0)

// HLWQ_CUDA_LAUNCH_CHECK("context {}", args...): after a <<<>>> launch, throw on a launch error (bad
// configuration, missing image for this GPU). Errors inside the kernel surface at the next synchronizing call.
#define HLWQ_CUDA_LAUNCH_CHECK(...) HLWQ_CUDA_CHECK(cudaGetLastError(), __VA_ARGS__)
