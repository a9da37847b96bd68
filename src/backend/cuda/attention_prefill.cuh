// Prefill attention on the tensor cores (flash-attention form): the attend op of attention.cuh for a batch that is
// one sequence of many tokens. Each block takes 4 warps' row tiles of one kv head; a warp's 16 rows are 16 / RP
// tokens × RP query heads of the group (RP: the group size rep rounded up to a power of two, rows of heads ≥ rep
// are padding), so every K/V tile staged in shared memory serves the whole group. Per tile of 16 keys:
// S = Q·Kᵀ (mma.sync m16n8k16, bf16 in, fp32 out; K fragments by ldmatrix), the causal mask, an online softmax in
// the log2 domain, O += P·V (V fragments by ldmatrix.trans). K/V tiles are double-buffered by cp.async. q and P enter
// the MMAs as hi + lo pairs of bf16 parts (~16 bits each, as attend_kernel's fp32 values): with either rounded to
// bf16 once, a trained model's prefill moved 40× further from the CPU engine at a routing near-tie
// (CudaHlwqModel.Bf16MixersBesideQuantizedLinearsMatchCpu, H200), so the cached K and V are the only bf16 roundings.
// Why: the CUDA-core kernel runs a warp per key with a shuffle reduction per key and head: 175 ms of a 547 ms
// prefill of 4096 tokens on the H200 (bench/cuda/NOTES.md, fourteenth session).
#pragma once
#include <cstdint>

#include <cuda_runtime_api.h>

#include "backend/cuda/attention.cuh"

namespace hlwq::cuda {

// Whether attend_prefill serves a batch of T tokens in n_seq sequences with these dims.
bool attend_prefill_fits(int64_t T, int n_seq, const AttnDimsDev& d);

// As attend (attention.cuh) for T tokens of one sequence (their block table at bt + bt_off[0], positions pos[t]
// increasing with t).
void attend_prefill(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt,
                    const uint16_t* k_pages, const uint16_t* v_pages, int64_t T, const AttnDimsDev& d, float* out,
                    cudaStream_t st);

}  // namespace hlwq::cuda
