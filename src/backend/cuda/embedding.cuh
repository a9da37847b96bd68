// Token embedding lookup on the device: h fp32 [T, H] = table [ids[t]] (bf16 [V, H]). ids must be < V (the caller
// validates them on the host before upload; the kernel does not check).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

namespace hlwq::cuda {

void embed(const int* ids, const uint16_t* table, int64_t T, int64_t H, float* h, cudaStream_t st);

}  // namespace hlwq::cuda
