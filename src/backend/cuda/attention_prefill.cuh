// Prefill attention on the tensor cores (flash-attention form): the attend op of attention.cuh for the sequences of
// a batch that have many tokens (attend_plan). Each block takes 4 warps' row tiles of one kv head, all tokens of one
// sequence; a warp's 16 rows are 16 / RP tokens × RP query heads of the group (RP: the group size rep rounded up to a power of two, rows of heads ≥ rep
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

inline constexpr int64_t kAttendPrefillMinTokens = 16;  // shorter sequences: attend_kernel's key splits do better

// Whether the kernel serves these dims on the current device: D ∈ {64, 128, 256}, Hq / Hkv ≤ 8, and its shared
// memory (2 · 64 q rows and 4 · 16 K/V rows of D + 8 bf16: 101,376 bytes at D = 256) within the device's opt-in limit
// (99 KB on consumer Ampere and Ada cards, so it runs there; a smaller one gets the CUDA-core kernel).
bool attend_prefill_supported(const AttnDimsDev& d);
// Tokens of one block: 4 warps × 16 / RP.
int64_t attend_prefill_block_tokens(const AttnDimsDev& d);

// As attend (attention.cuh) for the blocks tiles [2·n_tiles] (device): (first token, end) of each, consecutive
// tokens of one sequence (their block table at bt + bt_off[first], positions pos[t] increasing with t), at most
// attend_prefill_block_tokens(d) of them.
void attend_prefill(const float* qg, int64_t ldq, const int* pos, const int* bt_off, const int* bt,
                    const uint16_t* k_pages, const uint16_t* v_pages, const int* tiles, int64_t n_tiles,
                    const AttnDimsDev& d, float* out, cudaStream_t st);

}  // namespace hlwq::cuda
